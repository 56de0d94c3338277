"""Hostile uploads to the citizen import: wrong encodings, formula cells, control characters,
oversize, empty, not CSV/XLSX at all, header-only, duplicated headers, lines without end.

Each is answered with a clear error, at the place the contract puts it: the upload form (the
file as a whole, when its first bytes tell), the job (the file as a whole, found while reading
it; no row imported), or a row of the error report (that row only; the good rows import). A
refused row leaves nothing behind: no citizen, no card."""

import csv
import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from openpyxl import Workbook

from insurance.imports.jobs import import_job_create, run_import_job
from insurance.models import Certificate, Citizen, ImportJob, ImportJobState
from portal.actors import Actor
from portal.models import Role
from testkit.citizens import new_id_number
from testkit.imports import HEADER
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"


def rows_text(rows: list[list[str]], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.writer(out)  # "\r\n" ends a line, as spreadsheet programs write; a "\r" in a field is quoted
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def person(name: str = "好人", phone: str = "13800000000") -> list[str]:
    return [new_id_number("310000"), name, phone, "310000", "resident", ""]


@pytest.fixture
def clerk_client(client, make_user, media):
    sign_in(client, make_user(Role.CLERK))
    client.cookies["django_language"] = "en"
    return client


def post(client, name: str, content: bytes):
    return client.post("/citizens/imports/new/", {"region": "310000", "file": SimpleUploadedFile(name, content)})


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


def nothing_written() -> bool:
    return not Citizen.objects.exists() and not Certificate.objects.exists()


def a_zip_that_is_no_workbook() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return out.getvalue()


# --- Refused by the upload form ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("people.csv", rows_text([person()]).encode("utf-16"), "not a text (CSV) file"),  # with a BOM
        ("people.csv", rows_text([person()]).encode("utf-16-le"), "not a text (CSV) file"),  # without
        ("people.csv", rows_text([person("张三")]).encode("gbk"), "not UTF-8"),
        ("people.csv", b"", "The submitted file is empty."),
        ("people.xlsx", b"", "The submitted file is empty."),
        ("people.csv", PNG, "not a text (CSV) file"),
        ("people.xlsx", PNG, "not a readable XLSX workbook"),
        ("people.xlsx", a_zip_that_is_no_workbook(), "not a readable XLSX workbook"),
        ("people.png", PNG, "Only .csv and .xlsx files"),
    ],
    ids=["utf16-bom", "utf16-no-bom", "gbk", "empty-csv", "empty-xlsx", "png-as-csv", "png-as-xlsx", "zip", "png"],
)
def test_the_upload_form_refuses_a_file_it_can_tell_is_wrong(clerk_client, name, content, message):
    response = post(clerk_client, name, content)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ImportJob.objects.exists()


def test_a_file_over_the_cap_is_refused_at_upload_and_not_kept(clerk_client, settings):
    settings.ECARD_IMPORT_MAX_BYTES = 2_000
    content = rows_text([person() for _ in range(100)]).encode()
    assert len(content) > 2_000
    response = post(clerk_client, "people.csv", content)
    assert response.status_code == 400
    assert "The file is larger than" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_a_second_file_in_the_request_cannot_slip_a_truncated_upload_under_the_cap(clerk_client, settings):
    settings.ECARD_IMPORT_MAX_BYTES = 2_000
    content = rows_text([person() for _ in range(10)]).encode()
    assert len(content) < 2_000
    response = clerk_client.post(
        "/citizens/imports/new/",
        {
            "extra": SimpleUploadedFile("padding.bin", b"x" * 1_900),
            "region": "310000",
            "file": SimpleUploadedFile("people.csv", content),
        },
    )
    assert response.status_code == 400 and "The file is larger than" in response.content.decode()
    assert not ImportJob.objects.exists()


# --- Whole-file errors found by the job: nothing imported -----------------------------


def test_a_csv_whose_non_utf8_bytes_come_late_fails_before_any_row_is_imported(make_user, media):
    rows = [person(f"R{i}") for i in range(200)] + [person("张三")]  # ASCII first: the form sees UTF-8
    content = rows_text(rows[:-1]).encode() + rows_text(rows[-1:], header=[]).encode("gbk")[2:]
    job = run_job(make_user, content)
    assert job.state == ImportJobState.FAILED and job.rows_done == 0
    assert job.error.startswith("The file is not UTF-8 (near byte") and "No row was imported" in job.error
    assert nothing_written()


def test_a_utf8_file_with_a_bom_imports(make_user, media):
    job = run_job(make_user, b"\xef\xbb\xbf" + rows_text([person("张三")]).encode())
    assert (job.state, job.created) == (ImportJobState.DONE, 1), job.error


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("people.csv", rows_text([]).encode()),
        ("people.csv", rows_text([["", "", "", "", "", ""], []]).encode()),
    ],
    ids=["header-only", "blank-rows-only"],
)
def test_a_file_with_no_row_under_its_header_fails_its_job(make_user, media, name, content):
    job = run_job(make_user, content, name)
    assert job.state == ImportJobState.FAILED and job.error == "The file has no rows under its header."
    assert nothing_written()


def test_a_header_only_workbook_fails_its_job(make_user, media, tmp_path):
    workbook = Workbook()
    workbook.active.append(HEADER)
    workbook.save(tmp_path / "h.xlsx")
    job = run_job(make_user, (tmp_path / "h.xlsx").read_bytes(), "people.xlsx")
    assert job.state == ImportJobState.FAILED and job.error == "The file has no rows under its header."


def test_duplicated_headers_fail_the_job_with_nothing_imported(make_user, media):
    header = ["id_number", "name", "phone", "region_code", "scheme", "name"]
    content = rows_text([[new_id_number("310000"), "甲", "", "310000", "resident", "乙"]], header=header).encode()
    job = run_job(make_user, content)
    assert (
        job.state == ImportJobState.FAILED and job.error == "The header row names the column(s) more than once: name."
    )
    assert nothing_written()


# --- Row errors: that row only -------------------------------------------------------


FORMULAS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3*cmd|' /C calc'!A0", "@SUM(A1:A9)", '=HYPERLINK("http://x")']


def test_formula_like_names_are_stored_as_text_and_exported_neutralised(make_user, media, client):
    job = run_job(make_user, rows_text([person(name) for name in FORMULAS]).encode())
    assert (job.state, job.created) == (ImportJobState.DONE, len(FORMULAS)), job.error
    assert sorted(Citizen.objects.values_list("name", flat=True)) == sorted(FORMULAS)
    sign_in(client, make_user(Role.REGION_ADMIN))
    response = client.post("/citizens/", {"format": "csv"})  # exports are POSTs
    exported = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    names = [row[1] for row in exported[1:]]
    assert len(names) == len(FORMULAS) and all(name.startswith("'") for name in names), names


def test_an_xlsx_formula_cell_is_never_evaluated(make_user, media, tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append([new_id_number("310000"), '=CONCATENATE("张","三")', "", "310000", "resident", ""])
    sheet.append(person("李四"))
    workbook.save(tmp_path / "f.xlsx")
    job = run_job(make_user, (tmp_path / "f.xlsx").read_bytes(), "people.xlsx")
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 1, 1), job.error
    assert list(job.row_errors.values_list("row", "column")) == [(2, "name")]  # no cached value: no name
    assert list(Citizen.objects.values_list("name", flat=True)) == ["李四"]


@pytest.mark.parametrize(
    "name",
    ["张\x00三", "张\x1b[31m三", "\u202e三张", "张\u2066三", "张\r三", "张\u2028三"],
    ids=["nul", "escape", "rlo", "lri", "cr", "line-separator"],
)
def test_control_and_direction_characters_in_a_name_fail_that_row_only(make_user, media, name):
    job = run_job(make_user, rows_text([person("甲"), person(name), person("丙")]).encode())
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 2, 1), job.error
    errors = list(job.row_errors.values_list("row", "column", "message"))
    assert [(row, column) for row, column, _ in errors] == [(3, "name")]
    assert errors[0][2].startswith("Remove the control or invisible characters (U+")
    assert sorted(Citizen.objects.values_list("name", flat=True)) == ["丙", "甲"]
    assert Certificate.objects.count() == 2


def test_control_characters_in_a_phone_fail_that_row_only(make_user, media):
    job = run_job(make_user, rows_text([person("甲", "138\x000000000"), person("乙")]).encode())
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 1, 1), job.error
    assert list(job.row_errors.values_list("row", "column")) == [(2, "phone")]


def test_the_register_form_refuses_control_characters_in_a_name(make_user, client):
    sign_in(client, make_user(Role.CLERK))
    client.cookies["django_language"] = "en"
    response = client.post(
        "/citizens/new/",
        {"id_number": new_id_number("310000"), "name": "张\u202e三", "region": "310000", "scheme": "resident"},
    )
    assert response.status_code == 200
    assert "Remove the control or invisible characters (U+202E)." in response.content.decode()
    assert not Citizen.objects.exists()


def test_a_line_of_a_million_commas_is_one_row_error(make_user, media):
    content = (
        rows_text([person("甲")]).encode() + b"," * 1_000_000 + b"\n" + rows_text([person("丙")], header=[]).encode()
    )
    job = run_job(make_user, content)
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 2, 1), job.error
    assert list(job.row_errors.values_list("row", "column")) == [(3, "")]
