"""Validating one row of an import. Error messages never repeat the row's
personal data: a report names the row and column only."""

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from insurance.identity import IdentityNumber, InvalidIdentityNumber, parse_identity_number
from insurance.imports.reading import REQUIRED_COLUMNS, RowProblem
from insurance.models import Scheme
from portal.models import Region
from portal.text import text_refusal

_PHONE = re.compile(r"\+?[0-9][0-9 -]{4,19}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")  # bounded: int() of thousands of digits raises


@dataclass(frozen=True)
class RowError:
    row: int  # the spreadsheet's row number: the header is row 1
    column: str  # "" when the error concerns the whole row
    message: str


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


def validate_row(
    number: int, raw: "Mapping[str, Any] | RowProblem", regions: Mapping[str, Region], today: dt.date | None = None
) -> tuple[ValidRow | None, list[RowError]]:
    if isinstance(raw, RowProblem):
        return None, [RowError(number, "", raw.message)]
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
    if phone and not _PHONE.fullmatch(phone):
        errors.append(RowError(number, "phone", _("A phone number is 5 to 20 digits, spaces or dashes.")))
    region = regions.get(values["region_code"])
    if region is None:
        errors.append(RowError(number, "region_code", _("Unknown pilot region code.")))
    if values["scheme"] not in _SCHEMES:
        errors.append(RowError(number, "scheme", _("The scheme is employee or resident.")))
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
    return ValidRow(identity, name, phone, region, values["scheme"], balance), []
