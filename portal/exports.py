"""CSV and XLSX exports of the portal's lists.

A list view builds its queryset exactly as for the screen (scoped by its own
selector, filtered by the same form) and, when the request asks for a file,
hands it to `export_response` instead of paginating it. Screen and file
therefore cannot differ in scope or filters.

Asking for a file is a POST of `format=csv` or `format=xlsx` to the list's URL,
whose query string keeps the filters: the export buttons are a small form
carrying the CSRF token. An export writes an audit event, so it must not be
something another site can make a signed-in browser do with a link or an image;
a GET with `?format=` shows the list and records nothing.

Who may export: national operators, region administrators and auditors
(DESIGN §2 lists exports for them only); security officers, whose duty is keys,
get 403 like clerks. The audit log's own export is for those who may read it. Clerks work one citizen at a time and
get 403 on an export; the buttons are not shown to them.

Personal data: every export is a list, and lists show personal data masked
(DESIGN §3), so an export masks identity numbers, phones and citizens' names
for EVERY role, national operators included. Full values are only ever shown
on a citizen's detail page, one citizen at a time. The columns of each view
therefore read the masked fields (`id_number_masked`, `phone_masked`,
`name_masked`), never the decrypted ones.

Each export writes ONE audit event (`list.export`) before the first byte is
sent: who, which list, the filters (never personal data: the citizen search
records only the kind of search), the format and the row count. Rows are read
with `.iterator(chunk_size=...)` so memory stays flat; at most
`ECARD_EXPORT_MAX_ROWS` rows (default 50,000) are written, and a last line
says so when the cap cut the list.

With a replica configured, an export's rows (and its row count) are read from it
when the list's screen would be (portal/replica.py), though the export is a POST:
it is a read of a list, and its audit event is written on the primary.

Spreadsheet formula injection: a text cell starting with = + - @ (or a tab /
carriage return) is prefixed with a single quote, so that Excel or WPS shows
it as text instead of evaluating it.
"""

import csv
import datetime as dt
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from portal.actors import Actor
from portal.audit import audit_record
from portal.masking import mask_id_number, mask_phone
from portal.models import Region, Role
from portal.replica import read_alias
from portal.scope import visible_region_codes

FORMATS = ("csv", "xlsx")
DEFAULT_MAX_ROWS = 50_000
CHUNK_SIZE = 2000
EXPORT_ROLES = frozenset({Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.AUDITOR})
# Query parameters that are not filters of the list.
_NOT_FILTERS = {"page", "format", "export", "csrfmiddlewaretoken"}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ID_NUMBER = re.compile(r"^\d{17}[\dX]$")
_PHONE = re.compile(r"^\+?\d{7,20}$")


@dataclass(frozen=True)
class Column:
    """One column: its header (translated when the file is written) and how a row gives its value."""

    label: Any  # a lazy translation
    value: Callable[[Any], Any]

    def bind(self) -> Callable[[Any], Any]:
        """How this export's rows give the value (a column that reads a table first overrides it)."""
        return self.value


class RegionColumn(Column):
    """A region's name in the reader's language (上海市 / Shanghai) for a row's region code;
    the names are read once per export."""

    def bind(self) -> Callable[[Any], Any]:
        names = region_names()
        return lambda obj: names.get(code, code) if (code := self.value(obj)) else ""


def region_names() -> dict[str, str]:
    """Region code → its name in the reader's language, in one query."""
    return {region.code: region.display_name for region in Region.objects.all()}


def max_rows() -> int:
    return int(getattr(settings, "ECARD_EXPORT_MAX_ROWS", DEFAULT_MAX_ROWS))


def yuan(fen: int | None) -> Decimal | None:
    """Integer fen as exact yuan with two decimals (a number in the spreadsheet, never a float)."""
    return None if fen is None else (Decimal(fen) / 100).quantize(Decimal("0.01"))


def requested_format(request: HttpRequest) -> str | None:
    """ "csv" or "xlsx" when the request is an export's POST, else None: the screen (a GET,
    whatever its query string, and an unknown format)."""
    if request.method != "POST":
        return None
    value = (request.POST.get("format") or "").lower()
    return value if value in FORMATS else None


def may_export(user) -> bool:
    return getattr(user, "role", None) in EXPORT_ROLES


def _scrub(value: str) -> str:
    """Free-text filters are recorded, but an identity number or a phone typed into one is masked."""
    value = value[:100]
    compact = value.strip().upper()
    if _ID_NUMBER.match(compact):
        return mask_id_number(compact)
    if _PHONE.match(compact):
        return mask_phone(compact)
    return value


def request_filters(request: HttpRequest, *, drop: Iterable[str] = ()) -> dict[str, str]:
    """The list's filters as the request gives them, for the audit event."""
    dropped = _NOT_FILTERS | set(drop)
    return {key: _scrub(value) for key, value in request.GET.items() if key not in dropped and value != ""}


def neutralise(value: str) -> str:
    """A cell that a spreadsheet would take for a formula is made text."""
    if value and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _cell(value: Any) -> Any:
    """A plain value for a cell: text neutralised, datetimes in Asia/Shanghai without a zone
    (spreadsheets have none), numbers kept as numbers, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, dt.datetime):
        if timezone.is_aware(value):
            value = timezone.localtime(value)
        return value.replace(tzinfo=None, microsecond=0)
    if isinstance(value, (int, Decimal, dt.date)):
        return value
    return neutralise(str(value))


def _audit_region(user, filters: dict[str, str]) -> str:
    """The region the export is recorded under, so that the region's administrators
    and auditors see it in their audit log: the region filtered on, or the user's
    only region. An export across several regions is recorded without a region
    (national auditors, and a national operator allowed to read the log, see it)."""
    codes = visible_region_codes(user) or []
    region = filters.get("region", "")
    if region and (not codes or region in codes):
        return region[:6]
    return codes[0] if len(codes) == 1 else ""


def _rows(queryset: QuerySet | Iterable, columns: list[Column], limit: int) -> Iterator[list[Any]]:
    source = queryset.iterator(chunk_size=CHUNK_SIZE) if isinstance(queryset, QuerySet) else iter(queryset)
    values = [column.bind() for column in columns]
    for index, obj in enumerate(source):
        if index >= limit:
            break
        yield [_cell(value(obj)) for value in values]


class _Echo:
    """csv.writer writes into this and we hand each line on to the response."""

    def write(self, value: str) -> str:
        return value


def _csv_stream(header: list[str], rows: Iterator[list[Any]], footer: str | None) -> Iterator[str]:
    writer = csv.writer(_Echo())
    # The byte order mark makes Excel read the file as UTF-8 (Chinese names and labels).
    yield "\ufeff" + writer.writerow(header)
    for row in rows:
        # str() of a datetime is "2026-01-05 09:30:00", of a date "2026-01-05": what spreadsheets read as dates.
        yield writer.writerow(row)
    if footer:
        yield writer.writerow([footer])


def _xlsx_file(title: str, header: list[str], rows: Iterator[list[Any]], footer: str | None):
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    # Write-only mode streams rows to a temporary file instead of holding the sheet in memory.
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31] or "export")
    sheet.append(header)
    for row in rows:
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # never a formula, whatever the text
            elif isinstance(value, dt.datetime):
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
            elif isinstance(value, dt.date):
                cell.number_format = "yyyy-mm-dd"
            elif isinstance(value, Decimal):
                cell.number_format = "0.00##"
            cells.append(cell)
        sheet.append(cells)
    if footer:
        sheet.append([footer])
    spool = tempfile.TemporaryFile()
    workbook.save(spool)
    spool.seek(0)
    return spool


def export_response(
    request: HttpRequest,
    *,
    list_name: str,
    queryset: QuerySet | Iterable,
    columns: list[Column],
    fmt: str,
    filters: dict[str, str] | None = None,
) -> HttpResponse:
    """The file of the list. `queryset` must already be the view's scoped, filtered,
    ordered rows; `filters` is what the audit event records (defaults to the query
    parameters; pass it explicitly where a parameter could hold personal data)."""
    if not may_export(request.user):
        raise PermissionDenied
    if fmt not in FORMATS:
        raise ValueError(fmt)
    limit = max_rows()
    filters = request_filters(request) if filters is None else filters
    alias = read_alias(request)
    if alias != DEFAULT_DB_ALIAS and isinstance(queryset, QuerySet):
        # A file of a list tolerates lag like the list's screen: its rows (and their count) may come
        # from the replica (portal/replica.py); the audit event below is written on the primary.
        queryset = queryset.using(alias)
    total = queryset.count() if isinstance(queryset, QuerySet) else len(queryset)  # type: ignore[arg-type]
    written = min(total, limit)
    truncated = total > limit
    with transaction.atomic():
        audit_record(
            actor=Actor.for_request(request),
            action="list.export",
            object_type="export",
            object_id=list_name,
            region_code=_audit_region(request.user, filters),
            after={"list": list_name, "format": fmt, "filters": filters, "rows": written, "truncated": truncated},
        )
    header = [str(column.label) for column in columns]
    footer = (
        (
            _("Export cut at %(limit)s of %(total)s rows: narrow the filters to export the rest.")
            % {"limit": limit, "total": total}
        )
        if truncated
        else None
    )
    rows = _rows(queryset, columns, limit)
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    filename = f"{list_name}-{stamp}.{fmt}"
    if fmt == "csv":
        response: HttpResponse = StreamingHttpResponse(
            _csv_stream(header, rows, footer), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    else:
        response = FileResponse(
            _xlsx_file(list_name, header, rows, footer),
            as_attachment=True,
            filename=filename,
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    response["X-Export-Rows"] = str(written)
    if truncated:
        response["X-Export-Truncated"] = "1"
    response["Cache-Control"] = "no-store"
    return response
