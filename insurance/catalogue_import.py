"""CSV import of catalogue services and of facilities.

Rows are read one at a time from the stream (the file is never loaded whole)
and each good row is written through the catalogue services in its own
transaction: a bad row is reported (row number, column, reason) and the good
rows around it are still imported. An existing code is updated.
"""

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from insurance import catalogue
from insurance.models import Facility, FacilityKind, ServiceCategory, ServiceItem
from portal.actors import Actor
from portal.errors import DomainError
from portal.models import Region

SERVICE_COLUMNS = ("code", "name_zh", "name_en", "category", "unit", "max_unit_price_fen")
FACILITY_COLUMNS = ("code", "name_zh", "name_en", "kind", "region_code")
MAX_ROWS = 50_000


@dataclass(frozen=True)
class RowError:
    row: int  # the line of the file, the header being line 1
    column: str
    reason: str


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated + self.unchanged


class ImportFileError(Exception):
    """The file as a whole cannot be read (encoding, header)."""


class _RowInvalid(Exception):
    def __init__(self, column: str, reason: str):
        self.column, self.reason = column, reason


def text_lines(binary: Iterable[bytes]) -> Iterator[str]:
    """Decode an uploaded file (UTF-8, with or without BOM) line by line."""
    stream = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")  # type: ignore[arg-type]
    try:
        yield from stream
    except UnicodeDecodeError as exc:
        raise ImportFileError(_("The file is not UTF-8 text.")) from exc
    finally:
        # Leave the uploaded file to its owner (closing the wrapper would close it).
        try:
            stream.detach()
        except ValueError:
            pass


def _rows(lines: Iterable[str], columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(lines)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ImportFileError(_("The file is not a CSV file.")) from exc
    missing = [c for c in columns if c not in (header or [])]
    if missing:
        raise ImportFileError(_("The header lacks the columns: %(columns)s.") % {"columns": ", ".join(missing)})
    count = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(
                _("The CSV file is malformed near line %(line)s.") % {"line": reader.line_num}
            ) from exc
        count += 1
        if count > MAX_ROWS:
            raise ImportFileError(_("A file holds at most %(max)s rows.") % {"max": MAX_ROWS})
        yield reader.line_num, {c: (row.get(c) or "").strip() for c in columns}


def _required(row: dict[str, str], column: str) -> str:
    if not row[column]:
        raise _RowInvalid(column, _("This value is required."))
    return row[column]


def _domain_column(error: DomainError, default: str) -> str:
    return str(error.extra.get("field") or default)


def _import(lines: Iterable[str], columns: tuple[str, ...], write_row: Callable[[dict[str, str]], str]) -> ImportResult:
    result = ImportResult()
    try:
        for line, row in _rows(lines, columns):
            try:
                outcome = write_row(row)
            except _RowInvalid as invalid:
                result.errors.append(RowError(line, invalid.column, invalid.reason))
            except DomainError as error:
                result.errors.append(RowError(line, _domain_column(error, "code"), error.message))
            else:
                setattr(result, outcome, getattr(result, outcome) + 1)
    finally:
        close = getattr(lines, "close", None)
        if close is not None and not isinstance(lines, io.IOBase):
            close()  # a generator over the upload: end it while the upload is open
    return result


def import_services(*, actor: Actor, lines: Iterable[str]) -> ImportResult:
    """Create or update catalogue services from CSV lines (national operators only: the view checks)."""

    def write_row(row: dict[str, str]) -> str:
        values = {c: _required(row, c) for c in SERVICE_COLUMNS}
        if values["category"] not in ServiceCategory.values:
            raise _RowInvalid(
                "category", _("Unknown category (one of: %(values)s).") % {"values": ", ".join(ServiceCategory.values)}
            )
        price = values["max_unit_price_fen"]
        if not price.isascii() or not price.isdigit():
            raise _RowInvalid("max_unit_price_fen", _("The price is a whole number of fen, not negative."))
        changes = {
            "name_zh": values["name_zh"],
            "name_en": values["name_en"],
            "category": values["category"],
            "unit": values["unit"],
            "max_unit_price_fen": int(price),
        }
        item = ServiceItem.objects.filter(code=values["code"]).first()
        if item is None:
            catalogue.service_create(actor=actor, code=values["code"], **changes)
            return "created"
        changes = {k: v for k, v in changes.items() if getattr(item, k) != v}
        if not changes:
            return "unchanged"
        catalogue.service_update(actor=actor, item=item, **changes)
        return "updated"

    return _import(lines, SERVICE_COLUMNS, write_row)


def import_facilities(*, actor: Actor, lines: Iterable[str], region_codes: list[str] | None) -> ImportResult:
    """Create or update facilities from CSV lines; `region_codes` are the regions the
    importing person may edit (None: every region)."""
    regions = {r.code: r for r in Region.objects.all()}

    def write_row(row: dict[str, str]) -> str:
        values = {c: _required(row, c) for c in FACILITY_COLUMNS}
        if values["kind"] not in FacilityKind.values:
            raise _RowInvalid(
                "kind", _("Unknown kind (one of: %(values)s).") % {"values": ", ".join(FacilityKind.values)}
            )
        region_code = values["region_code"]
        if region_code not in regions or (region_codes is not None and region_code not in region_codes):
            raise _RowInvalid("region_code", _("Not a region you may edit."))
        facility = Facility.objects.filter(code=values["code"]).first()
        changes = {"name_zh": values["name_zh"], "name_en": values["name_en"], "kind": values["kind"]}
        if facility is None:
            catalogue.facility_create(actor=actor, code=values["code"], region=regions[region_code], **changes)
            return "created"
        if facility.region_id != region_code:
            # Whether the code exists elsewhere is not the importer's business beyond this.
            raise _RowInvalid("code", _("This code is already used by a facility of another region."))
        changes = {k: v for k, v in changes.items() if getattr(facility, k) != v}
        if not changes:
            return "unchanged"
        catalogue.facility_update(actor=actor, facility=facility, **changes)
        return "updated"

    return _import(lines, FACILITY_COLUMNS, write_row)


def error_report_csv(errors: Iterable[RowError]) -> str:
    """The downloadable report: one line per refused row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["row", "column", "reason"])
    for error in errors:
        writer.writerow([error.row, error.column, _csv_safe(error.reason)])
    return out.getvalue()


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ would be run as a formula by spreadsheet programs.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
