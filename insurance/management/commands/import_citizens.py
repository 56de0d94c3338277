"""`python manage.py import_citizens FILE [--errors REPORT.csv]`.

A thin wrapper around `insurance.imports`: row errors go to stderr (and to
the CSV report), the last line on stdout is the JSON summary.
"""

import csv
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from insurance.imports import report
from insurance.imports.reading import ImportFileError, read_rows
from insurance.imports.validation import RowError
from insurance.imports.writing import ImportSummary, import_rows
from portal.actors import Actor


class Command(BaseCommand):
    help = "Import citizens from a CSV or XLSX file (id_number,name,phone,region_code,scheme[,account_balance_fen])."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="a .csv (UTF-8) or .xlsx file")
        parser.add_argument(
            "--errors",
            metavar="REPORT",
            help="write the row errors to this CSV file (row, column, error, submitted value, masked)",
        )

    def handle(self, *args, file: str, errors: str | None, **options) -> None:
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"no such file: {file}")
        # UTF-8 with a BOM, so that spreadsheet programs read the Chinese headers and messages
        report_handle = Path(errors).open("w", encoding="utf-8-sig", newline="") if errors else None
        writer = csv.writer(report_handle) if report_handle else None
        if writer:
            writer.writerow(report.header())

        def on_error(error: RowError) -> None:
            self.stderr.write(f"row {error.row}, {error.column or '-'}: {error.message}")
            if writer:
                writer.writerow(report.line(error.row, error.column, error.message, error.value))

        def on_progress(summary: ImportSummary) -> None:
            if options.get("verbosity", 1) >= 2:
                self.stderr.write(f"{summary.rows_done} rows done")

        try:
            summary = import_rows(
                read_rows(path),
                actor=Actor.system("import_citizens"),
                on_error=on_error,
                progress=on_progress,
                progress_every=1000,
            )
        except ImportFileError as exc:
            raise CommandError(str(exc)) from exc
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"the file is not UTF-8 (stopped near byte {exc.start}; earlier rows were imported)"
            ) from exc
        finally:
            if report_handle:
                report_handle.close()
        self.stdout.write(json.dumps(summary.as_dict()))
