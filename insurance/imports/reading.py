"""Reading an import file: `read_rows()` (a path) and `read_stream()` (an open file)
stream a CSV (UTF-8) or XLSX file as `(row number, {column: value})`, one row at
a time, so memory stays flat however long the file."""

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from insurance.imports.columns import HEADER_ALIASES, REQUIRED_COLUMNS
from insurance.imports.columns import OPTIONAL_COLUMNS as OPTIONAL_COLUMNS  # imported from here by callers

ALLOWED_SUFFIXES = (".csv", ".xlsx")

Row = tuple[int, "Mapping[str, Any] | RowProblem"]


class ImportFileError(Exception):
    """The file as a whole cannot be read (format, header); no row was imported."""


def _header(cells: Iterable[Any]) -> list[str]:
    # A Chinese header name (身份证号) stands for its English one (id_number).
    names = [str(c).strip().lower() if c is not None else "" for c in cells]
    names = [HEADER_ALIASES.get(name, name) for name in names]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ImportFileError(_("The header row lacks the column(s): %(columns)s.") % {"columns": ", ".join(missing)})
    # A column named twice would let its second cell silently replace the first.
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise ImportFileError(
            _("The header row names the column(s) more than once: %(columns)s.") % {"columns": ", ".join(repeated)}
        )
    return names


def _no_rows() -> ImportFileError:
    return ImportFileError(_("The file has no rows under its header."))


def _is_blank(values: Iterable[Any]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in values)


MAX_LINE_CHARS = 64 * 1024  # a citizen's row is well under 1 KiB


@dataclass(frozen=True)
class RowProblem:
    """A row that could not be read at all (it becomes a row error; the others go on)."""

    message: str


class _LineTooLong(Exception):
    pass


class _Lines:
    """The lines of a text file, each at most MAX_LINE_CHARS: a longer one is skipped to its
    end and raises _LineTooLong to the reader, which goes on with the next line (a line
    without end would otherwise be read whole, and split into as many fields as it has commas)."""

    def __init__(self, handle: io.TextIOBase) -> None:
        self._handle = handle

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = self._handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        if len(line) > MAX_LINE_CHARS:
            while line and not line.endswith(("\n", "\r")):
                line = self._handle.readline(MAX_LINE_CHARS)
            raise _LineTooLong
        return line


def _read_csv(binary: BinaryIO) -> Iterator[Row]:
    # utf-8-sig drops a byte-order mark if there is one.
    handle = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    reader = csv.reader(_Lines(handle))
    try:
        names = _header(next(reader))
    except StopIteration:
        raise ImportFileError(_("The file is empty.")) from None
    except (_LineTooLong, csv.Error):
        raise ImportFileError(_("The header row cannot be read as CSV.")) from None
    number, rows = 1, 0
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            if not rows:
                raise _no_rows() from None
            return
        except _LineTooLong:
            rows += 1
            yield number, RowProblem(_("The line is longer than %(limit)s characters.") % {"limit": MAX_LINE_CHARS})
            continue
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                message = _("A field of this row is longer than %(limit)s characters.") % {
                    "limit": csv.field_size_limit()
                }
            else:
                message = _("This row cannot be read as CSV.")
            rows += 1
            yield number, RowProblem(message)
            continue
        if _is_blank(cells):
            continue
        rows += 1
        # A short row leaves its last columns missing (None), not empty.
        yield number, {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(names) if name}


_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\s+ref=\"[A-Z]{0,3}\$?([0-9]{1,9})(?::\$?[A-Z]{0,3}\$?([0-9]{1,9}))?\"")
_WORKSHEET = re.compile(r"xl/worksheets/[^/]+\.xml")
_RATIO_FLOOR = 1024 * 1024  # a part smaller than this unpacked is harmless, however packed


def check_xlsx(source: BinaryIO | Path) -> int | None:
    """Refuse (ImportFileError), from the zip's directory and before any part is parsed, a
    workbook that would unpack past the configured limits: in all, per part (openpyxl holds
    every part but the sheets whole in memory, the shared strings first), per compression
    ratio, in parts, in declared rows. Returns the first sheet's declared data rows, if any.

    The sizes are the directory's: zipfile never unpacks more than a member declares."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise ImportFileError(_("The file is not a readable XLSX workbook.")) from None
    with archive:
        members = archive.infolist()
        names = {m.filename for m in members}
        if "[Content_Types].xml" not in names or "xl/workbook.xml" not in names:
            raise ImportFileError(_("The file is not a readable XLSX workbook."))
        if len(members) > settings.ECARD_IMPORT_XLSX_MAX_MEMBERS:
            raise ImportFileError(
                _("The workbook has more than %(limit)s parts.") % {"limit": settings.ECARD_IMPORT_XLSX_MAX_MEMBERS}
            )
        limit = settings.ECARD_IMPORT_XLSX_MAX_UNCOMPRESSED
        if sum(m.file_size for m in members) > limit:
            raise ImportFileError(
                _("The workbook unpacks to more than %(limit)s; split it into smaller files.")
                % {"limit": filesizeformat(limit)}
            )
        sheets = []
        for member in members:
            ratio = member.file_size // max(member.compress_size, 1)
            if member.file_size > _RATIO_FLOOR and ratio > settings.ECARD_IMPORT_XLSX_MAX_RATIO:
                raise ImportFileError(
                    _(
                        "The workbook is compressed far more than a spreadsheet is (%(ratio)s to 1 in one part): it is refused."
                    )
                    % {"ratio": ratio}
                )
            if _WORKSHEET.fullmatch(member.filename):
                sheets.append(member)
            elif member.filename == "xl/sharedStrings.xml":
                limit = settings.ECARD_IMPORT_XLSX_MAX_SHARED_STRINGS
                if member.file_size > limit:
                    raise ImportFileError(
                        _("The workbook's shared strings unpack to more than %(limit)s; split it into smaller files.")
                        % {"limit": filesizeformat(limit)}
                    )
            elif member.file_size > settings.ECARD_IMPORT_XLSX_MAX_PART:
                raise ImportFileError(
                    _("A part of the workbook unpacks to more than %(limit)s.")
                    % {"limit": filesizeformat(settings.ECARD_IMPORT_XLSX_MAX_PART)}
                )
        declared: dict[str, int] = {}
        for sheet in sheets:
            try:
                with archive.open(sheet) as handle:
                    head = handle.read(64 * 1024)  # the dimension comes before the sheet's data
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
                raise ImportFileError(_("The file is not a readable XLSX workbook.")) from None
            if match := _DIMENSION.search(head):
                rows = int(match.group(2) or match.group(1))
                if rows > settings.ECARD_IMPORT_XLSX_MAX_ROWS:
                    raise ImportFileError(
                        _("The sheet has more than %(limit)s rows; split it into smaller files.")
                        % {"limit": settings.ECARD_IMPORT_XLSX_MAX_ROWS}
                    )
                declared[sheet.filename] = rows
    first = declared.get("xl/worksheets/sheet1.xml")
    return None if first is None else max(first - 1, 0)


def _read_xlsx(source: BinaryIO | Path) -> Iterator[Row]:
    from openpyxl import load_workbook

    check_xlsx(source)
    if not isinstance(source, Path):
        source.seek(0)
    try:
        workbook = load_workbook(source, read_only=True, data_only=True)  # streaming: rows are parsed as we go
    except Exception as exc:  # zipfile.BadZipFile, KeyError, InvalidFileException...
        raise ImportFileError(_("The file is not a readable XLSX workbook.")) from exc
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        try:
            names = _header(next(rows))
        except StopIteration:
            raise ImportFileError(_("The file is empty.")) from None
        found = False
        for number, cells in enumerate(rows, start=2):
            if _is_blank(cells):
                continue
            found = True
            # An empty cell reads as None: it is an empty value, not a missing column.
            yield (
                number,
                {
                    name: (("" if cells[i] is None else cells[i]) if i < len(cells) else None)
                    for i, name in enumerate(names)
                    if name
                },
            )
        if not found:
            raise _no_rows()
    finally:
        workbook.close()


def file_format(path: str | Path) -> str:
    """ "csv" or "xlsx" from a file's name (ImportFileError for any other)."""
    suffix = Path(path).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise ImportFileError(_("Only .csv and .xlsx files can be imported."))
    return suffix.lstrip(".")


def read_stream(binary: BinaryIO, fmt: str) -> Iterator[Row]:
    """Stream `(row number, {column: value})` from an open CSV (UTF-8) or XLSX file;
    an XLSX one must be seekable (a zip is read from its end)."""
    if fmt == "csv":
        return _read_csv(binary)
    if fmt == "xlsx":
        return _read_xlsx(binary)
    raise ImportFileError(_("Only .csv and .xlsx files can be imported."))


def read_rows(path: str | Path) -> Iterator[Row]:
    """Stream `(row number, {column: value})` from a CSV (UTF-8) or XLSX file."""
    fmt = file_format(path)

    def rows() -> Iterator[Row]:
        with Path(path).open("rb") as binary:
            yield from read_stream(binary, fmt)

    return rows()


def inspect_csv(binary: BinaryIO) -> int:
    """The number of data rows of a CSV, approximately (its lines, for the progress bar),
    reading it through once: ImportFileError if it is not UTF-8, before any row is imported."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines, last, offset = 0, b"\n", 0
    while True:
        chunk = binary.read(1 << 20)
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                _("The file is not UTF-8 (near byte %(byte)s): save it as CSV UTF-8. No row was imported.")
                % {"byte": offset - len(decoder.getstate()[0]) + exc.start}
            ) from None
        if not chunk:
            break
        offset += len(chunk)
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)
