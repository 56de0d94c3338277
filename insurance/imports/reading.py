"""Reading an import file: `read_rows()` streams a CSV (UTF-8) or XLSX file as
`(row number, {column: value})`, one row at a time, so memory stays flat
however long the file."""

import csv
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from django.utils.translation import gettext as _

REQUIRED_COLUMNS = ("id_number", "name", "phone", "region_code", "scheme")
OPTIONAL_COLUMNS = ("account_balance_fen",)
ALLOWED_SUFFIXES = (".csv", ".xlsx")

Row = tuple[int, Mapping[str, Any]]


class ImportFileError(Exception):
    """The file as a whole cannot be read (format, header); no row was imported."""


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
            yield (
                number,
                {
                    name: (("" if cells[i] is None else cells[i]) if i < len(cells) else None)
                    for i, name in enumerate(names)
                    if name
                },
            )
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


ALLOWED_SUFFIXES = (".csv", ".xlsx")


class _LostJob(Exception):
    """Another run took the job over (this one was presumed dead): stop without committing."""


def count_rows(path: str | Path) -> int | None:
    """The number of data rows, cheaply and approximately (for the progress bar):
    newlines of a CSV, the declared dimension of an XLSX sheet; None if unknown."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            lines, last = 0, b"\n"
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
            if last != b"\n":
                lines += 1
            return max(lines - 1, 0)
        from openpyxl import load_workbook

        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            rows = workbook.worksheets[0].max_row
        finally:
            workbook.close()
        return max(rows - 1, 0) if rows else None
    except Exception:  # an unreadable file fails properly when it is read
        return None
