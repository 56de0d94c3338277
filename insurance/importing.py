"""Bulk import of citizens (PARTNER_API.md "Provisioning").

One code path for `manage.py import_citizens` and the portal's background
import screen: `read_rows()` streams a CSV or XLSX file row by row, and
`import_rows()` takes any iterable of rows, validates each, registers a new
citizen (with a `pending_activation` e-card) or updates an existing one,
each row in its own transaction, and reports row errors and progress through
callbacks. Nothing is held per row, so memory stays flat however long the
file. Error messages never repeat the row's personal data.
"""

import csv
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from insurance import services
from insurance.identity import InvalidIdentityNumber, parse_identity_number
from insurance.models import Citizen, Scheme
from portal import domain_events
from portal.actors import Actor
from portal.errors import DomainError
from portal.models import Region

REQUIRED_COLUMNS = ("id_number", "name", "phone", "region_code", "scheme")
OPTIONAL_COLUMNS = ("account_balance_fen",)
ISSUE_REASON = "bulk import"
_PHONE = re.compile(r"\+?[0-9][0-9 -]{4,19}")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class ImportFileError(Exception):
    """The file as a whole cannot be read (format, header); no row was imported."""


@dataclass(frozen=True)
class RowError:
    row: int  # the spreadsheet's row number: the header is row 1
    column: str  # "" when the error concerns the whole row
    message: str


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    failed: int = 0

    @property
    def rows_done(self) -> int:
        return self.created + self.updated + self.failed

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "failed": self.failed}


Row = tuple[int, Mapping[str, Any]]


# --- Reading files ----------------------------------------------------------


def _header(cells: Iterable[Any]) -> list[str]:
    names = [str(c).strip().lower() if c is not None else "" for c in cells]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ImportFileError(_("The header row lacks the column(s): %(columns)s.") % {"columns": ", ".join(missing)})
    return names


def _is_blank(values: Iterable[Any]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in values)


def _read_csv(path: Path) -> Iterator[Row]:
    # utf-8-sig drops a byte-order mark if there is one.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            names = _header(next(reader))
        except StopIteration:
            raise ImportFileError(_("The file is empty.")) from None
        for number, cells in enumerate(reader, start=2):
            if _is_blank(cells):
                continue
            # A short row leaves its last columns missing (None), not empty.
            yield number, {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(names) if name}


def _read_xlsx(path: Path) -> Iterator[Row]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)  # streaming: rows are parsed as we go
    except Exception as exc:  # zipfile.BadZipFile, KeyError, InvalidFileException...
        raise ImportFileError(_("The file is not a readable XLSX workbook.")) from exc
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        try:
            names = _header(next(rows))
        except StopIteration:
            raise ImportFileError(_("The file is empty.")) from None
        for number, cells in enumerate(rows, start=2):
            if _is_blank(cells):
                continue
            # An empty cell reads as None: it is an empty value, not a missing column.
            yield number, {
                name: (("" if cells[i] is None else cells[i]) if i < len(cells) else None)
                for i, name in enumerate(names)
                if name
            }
    finally:
        workbook.close()


def read_rows(path: str | Path) -> Iterator[Row]:
    """Stream `(row number, {column: value})` from a CSV (UTF-8) or XLSX file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".xlsx":
        return _read_xlsx(path)
    raise ImportFileError(_("Only .csv and .xlsx files can be imported."))


# --- Validating and importing -------------------------------------------------


def _text(value: Any) -> str | None:
    """A cell as text; None stays None (the column is missing from this row)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # spreadsheets store phone numbers and amounts as numbers
    return str(value).strip()


@dataclass(frozen=True)
class _ValidRow:
    id_number: str
    name: str
    phone: str
    region: Region
    scheme: str
    account_balance_fen: int | None


def _validate(number: int, raw: Mapping[str, Any], regions: Mapping[str, Region]) -> tuple[_ValidRow | None, list[RowError]]:
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
        identity = parse_identity_number(values["id_number"])
    except InvalidIdentityNumber as exc:
        errors.append(RowError(number, "id_number", exc.message))
    name = values["name"]
    if not name or len(name) > 64:
        errors.append(RowError(number, "name", _("A name is 1 to 64 characters.")))
    phone = values["phone"]
    if phone and not _PHONE.fullmatch(phone):
        errors.append(RowError(number, "phone", _("A phone number is 5 to 20 digits, spaces or dashes.")))
    region = regions.get(values["region_code"])
    if region is None:
        errors.append(RowError(number, "region_code", _("Unknown pilot region code.")))
    if values["scheme"] not in Scheme.values:
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
            else:
                balance = int(balance_text)
    if errors:
        return None, errors
    assert identity is not None and region is not None
    return _ValidRow(identity.value, name, phone, region, values["scheme"], balance), []


def _apply(row: _ValidRow, *, actor: Actor) -> bool:
    """Write one valid row in its own transaction; True if a citizen was created."""
    with transaction.atomic():
        citizen_id = services.find_citizen_id_by_id_number(row.id_number)
        if citizen_id is None:
            citizen = services.citizen_register(
                actor=actor, id_number=row.id_number, name=row.name, phone=row.phone, region=row.region,
                scheme=row.scheme,
            )
            services.certificate_issue(actor=actor, citizen=citizen, reason=ISSUE_REASON)
            created = True
        else:
            citizen = Citizen.objects.get(pk=citizen_id)
            if citizen.region_id != row.region.code:
                raise DomainError(
                    "region_mismatch",
                    _("The citizen is insured in another region; an import does not move citizens."),
                    field="region_code",
                )
            services.citizen_update(actor=actor, citizen=citizen, name=row.name, phone=row.phone, scheme=row.scheme)
            created = False
        if row.account_balance_fen is not None:
            # The personal account ledger lives in `payments`, which insurance never imports:
            # a domain event, handled in this transaction, turns a changed balance into an
            # adjustment entry (a refusal, such as a balance below what pending settlements
            # hold, fails this row).
            domain_events.record(
                type="citizen.account_balance_set", aggregate_type="citizen", aggregate_id=str(citizen.pk),
                region_code=citizen.region_id,
                data={"citizen_id": citizen.pk, "balance_fen": row.account_balance_fen, "note": ISSUE_REASON,
                      "actor": {"type": actor.type, "id": actor.id, "label": actor.label, "user_id": actor.user_id}},
            )
    return created


def import_rows(
    rows: Iterable[Row],
    *,
    actor: Actor,
    on_error: Callable[[RowError], None] | None = None,
    progress: Callable[[ImportSummary], None] | None = None,
    progress_every: int = 100,
    region_codes: Collection[str] | None = None,
) -> ImportSummary:
    """Import rows; a bad row is reported through `on_error` and the others go on.

    `progress` is called with the running summary every `progress_every`
    rows and once at the end. `region_codes` limits the import to a clerk's
    regions (a row for another region is reported as an unknown region).
    """
    regions = {r.code: r for r in Region.objects.all() if region_codes is None or r.code in region_codes}
    summary = ImportSummary()
    report = on_error or (lambda error: None)
    for number, raw in rows:
        valid, errors = _validate(number, raw, regions)
        if valid is not None:
            try:
                if _apply(valid, actor=actor):
                    summary.created += 1
                else:
                    summary.updated += 1
            except DomainError as exc:
                errors = [RowError(number, str(exc.extra.get("field", "")), exc.message)]
        if errors:
            summary.failed += 1
            for error in errors:
                report(error)
        if progress is not None and summary.rows_done % progress_every == 0:
            progress(summary)
    if progress is not None:
        progress(summary)
    return summary
