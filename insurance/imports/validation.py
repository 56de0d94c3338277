"""Validating one row of an import. Error messages never repeat the row's
personal data; an error carries the rejected value for the report, masked when
it is an identity number, a name or a phone number."""

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from insurance.identity import IdentityNumber, InvalidIdentityNumber, parse_identity_number
from insurance.imports.columns import SCHEME_ALIASES
from insurance.imports.reading import REQUIRED_COLUMNS, RowProblem
from insurance.models import Scheme
from portal.masking import mask_id_number, mask_name, mask_phone
from portal.models import Region
from portal.text import text_refusal

# A mainland mobile number; a landline with its area code (0 and 2-3 digits).
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_LANDLINE = re.compile(r"0[0-9]{2,3}-?[0-9]{7,8}")
_MASKS = {"id_number": mask_id_number, "name": mask_name, "phone": mask_phone}
MAX_VALUE_CHARS = 64


def phone_is_valid(value: str) -> bool:
    """A mobile or a landline number, with the spaces (and for a mobile, the dashes) a
    spreadsheet user types between the groups of digits; the number is stored as given."""
    compact = value.replace(" ", "")
    return bool(_MOBILE.fullmatch(compact.replace("-", "")) or _LANDLINE.fullmatch(compact))


def shown_value(column: str, value: str) -> str:
    """A rejected value as the error report repeats it: masked if it is personal data."""
    value = value[:MAX_VALUE_CHARS]
    mask = _MASKS.get(column)
    return mask(value) if mask and value else value


_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")  # bounded: int() of thousands of digits raises


@dataclass(frozen=True)
class RowError:
    row: int  # the spreadsheet's row number: the header is row 1
    column: str  # "" when the error concerns the whole row
    message: str
    value: str = ""  # the rejected value, as `shown_value` shows it


def _text(value: Any) -> str | None:
    """A cell as text; None stays None (the column is missing from this row)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # spreadsheets store phone numbers and amounts as numbers
    return str(value).strip()


@dataclass(frozen=True)
class ValidRow:
    identity: IdentityNumber
    name: str
    phone: str
    region: Region
    scheme: str
    account_balance_fen: int | None

    @property
    def id_number(self) -> str:
        return self.identity.value


_SCHEMES = frozenset(Scheme.values)  # `Scheme.values` builds a new list on every access


def _region_message(code: str, regions: Mapping[str, Region], pilot_regions: Mapping[str, Region] | None) -> str:
    pilot = (pilot_regions or {}).get(code)
    if pilot is None:
        return _("Unknown pilot region code.")
    return _("The region is outside your regions (%(region)s); this import is for %(scope)s.") % {
        "region": f"{pilot.code} {pilot.display_name}",
        "scope": ", ".join(f"{r.code} {r.display_name}" for r in regions.values()),
    }


def validate_row(
    number: int,
    raw: "Mapping[str, Any] | RowProblem",
    regions: Mapping[str, Region],
    today: dt.date | None = None,
    *,
    pilot_regions: Mapping[str, Region] | None = None,
) -> tuple[ValidRow | None, list[RowError]]:
    """`regions` are those the row may name; `pilot_regions` all of them, so that a
    pilot region outside the import is told apart from an unknown code."""
    if isinstance(raw, RowProblem):
        return None, [RowError(number, "", raw.message)]
    row, errors = _validate(number, raw, regions, today, pilot_regions)
    if errors:
        values = {column: _text(value) or "" for column, value in raw.items()}
        errors = [replace(e, value=shown_value(e.column, values.get(e.column, ""))) for e in errors]
    return row, errors


def _validate(
    number: int,
    raw: "Mapping[str, Any]",
    regions: Mapping[str, Region],
    today: dt.date | None,
    pilot_regions: Mapping[str, Region] | None,
) -> tuple[ValidRow | None, list[RowError]]:
    errors: list[RowError] = []
    values: dict[str, str] = {}
    for column in REQUIRED_COLUMNS:
        value = _text(raw.get(column))
        if value is None:
            errors.append(RowError(number, column, _("The column is missing from this row.")))
        values[column] = value or ""
    if errors:
        return None, errors

    identity = None
    try:
        identity = parse_identity_number(values["id_number"], today=today)
    except InvalidIdentityNumber as exc:
        errors.append(RowError(number, "id_number", exc.message))
    name = values["name"]
    if not name or len(name) > 64:
        errors.append(RowError(number, "name", _("A name is 1 to 64 characters.")))
    elif refusal := text_refusal(name):
        errors.append(RowError(number, "name", refusal))
    phone = values["phone"]
    if phone and not phone_is_valid(phone):
        message = _("A phone number is an 11-digit mobile number or a landline with its area code (010-12345678).")
        errors.append(RowError(number, "phone", message))
    region = regions.get(values["region_code"])
    if region is None:
        errors.append(RowError(number, "region_code", _region_message(values["region_code"], regions, pilot_regions)))
    scheme = SCHEME_ALIASES.get(values["scheme"], values["scheme"])
    if scheme not in _SCHEMES:
        message = _("The scheme is 职工医保 (employee) or 居民医保 (resident).")
        errors.append(RowError(number, "scheme", message))
    balance: int | None = None
    raw_balance = raw.get("account_balance_fen")
    if isinstance(raw_balance, float) and not raw_balance.is_integer():
        errors.append(RowError(number, "account_balance_fen", _("The balance is a whole number of fen.")))
    else:
        balance_text = _text(raw_balance)
        if balance_text:
            if not _INTEGER.fullmatch(balance_text):
                errors.append(RowError(number, "account_balance_fen", _("The balance is a whole number of fen.")))
            elif int(balance_text) < 0:
                errors.append(RowError(number, "account_balance_fen", _("The balance cannot be negative.")))
            elif int(balance_text) > settings.ECARD_IMPORT_MAX_BALANCE_FEN:
                message = _("The balance is at most %(max)s fen.") % {"max": settings.ECARD_IMPORT_MAX_BALANCE_FEN}
                errors.append(RowError(number, "account_balance_fen", message))
            else:
                balance = int(balance_text)
    if errors:
        return None, errors
    assert identity is not None and region is not None
    return ValidRow(identity, name, phone, region, scheme, balance), []
