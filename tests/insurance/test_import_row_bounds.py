"""A bad row is a row of the error report, never a crashed job: numbers past their bounds,
fields past the CSV reader's limit, lines without end; the good rows around them import."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from insurance.imports.jobs import import_job_create, run_import_job
from insurance.models import Citizen, ImportJob, ImportJobState
from portal.actors import Actor
from portal.models import Role
from testkit.citizens import new_id_number
from testkit.imports import HEADER, write_xlsx

pytestmark = pytest.mark.django_db


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode()


def run_job(make_user, content: bytes, name: str = "people.csv") -> ImportJob:
    clerk = make_user(Role.CLERK)
    job = import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile(name, content),
        language="en",
    )
    return run_import_job(job.pk)


def good(name: str = "好人", balance: str = "") -> list[str]:
    return [new_id_number("310000"), name, "13800000000", "310000", "resident", balance]


def report(job: ImportJob) -> dict[int, tuple[str, str]]:
    return {e.row: (e.column, e.message) for e in job.row_errors.all()}


def test_balances_out_of_bounds_are_row_errors_and_the_good_rows_import(make_user, media):
    rows = [
        good("甲", "1200"),
        good("乙", "900000000000000000"),
        good("丙", "99999999999999999999"),
        good("丁", "-1"),
        good("戊", "9" * 5000),  # past the digits Python's int() accepts
        good("己", "100000000"),  # the default maximum itself
    ]
    job = run_job(make_user, csv_bytes(rows))
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 2, 4), job.error
    errors = report(job)
    assert set(errors) == {3, 4, 5, 6}
    assert {column for column, _ in errors.values()} == {"account_balance_fen"}
    assert errors[3][1] == errors[4][1] == "The balance is at most 100000000 fen."
    assert errors[5][1] == "The balance cannot be negative."
    assert sorted(Citizen.objects.values_list("name", flat=True)) == ["己", "甲"]


def test_an_xlsx_balance_past_the_maximum_is_a_row_error(make_user, media, tmp_path):
    rows = [good("甲"), [new_id_number("310000"), "乙", "", "310000", "resident", 9e17], good("丙")]
    job = run_job(make_user, write_xlsx(tmp_path / "p.xlsx", rows).read_bytes(), "people.xlsx")
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 2, 1), job.error
    assert report(job) == {3: ("account_balance_fen", "The balance is at most 100000000 fen.")}


def test_a_balance_the_database_cannot_hold_fails_its_row_not_the_job(make_user, media, settings):
    settings.ECARD_IMPORT_MAX_BALANCE_FEN = 10**30  # no bound in validation: the database refuses it
    job = run_job(make_user, csv_bytes([good("甲"), good("乙", "99999999999999999999"), good("丙")]))
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 2, 1), job.error
    assert report(job) == {3: ("account_balance_fen", "The row could not be stored: a value is out of range.")}
    assert sorted(Citizen.objects.values_list("name", flat=True)) == ["丙", "甲"]


def test_a_csv_field_over_the_readers_limit_is_a_row_error(make_user, media):
    # A quoted field of three lines, 150,000 characters in all: past csv.field_size_limit().
    field = "\n".join(["x" * 50_000] * 3)
    content = csv_bytes([good("甲"), [new_id_number("310000"), field, "", "310000", "resident", ""], good("丙")])
    job = run_job(make_user, content)
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 2, 1), job.error
    assert report(job) == {3: ("", "A field of this row is longer than 131072 characters.")}


def test_a_line_without_end_is_a_row_error(make_user, media):
    content = csv_bytes([good("甲"), good("x" * 300_000), good("丙")])
    job = run_job(make_user, content)
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 2, 1), job.error
    assert report(job) == {3: ("", "The line is longer than 65536 characters.")}
    assert sorted(Citizen.objects.values_list("name", flat=True)) == ["丙", "甲"]
