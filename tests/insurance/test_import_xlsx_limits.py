"""An XLSX file is a zip: what it unpacks to is checked from the zip's directory before
openpyxl parses any part (it reads all of sharedStrings.xml, however `read_only`)."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from openpyxl import Workbook

from insurance.imports.jobs import import_job_create, run_import_job
from insurance.models import Citizen, ImportJob, ImportJobState
from portal.actors import Actor
from portal.models import Role
from testkit.citizens import new_id_number
from testkit.imports import HEADER, write_xlsx
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

SHARED_STRINGS_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"


def workbook_bytes(tmp_path, rows: int = 1) -> bytes:
    data = [[new_id_number("310000"), f"人{i}", "", "310000", "resident", ""] for i in range(rows)]
    return write_xlsx(tmp_path / "people.xlsx", data).read_bytes()


def with_parts(xlsx: bytes, parts: dict[str, bytes]) -> bytes:
    """The workbook with parts added (sharedStrings.xml declared in [Content_Types].xml, so that
    openpyxl reads it), highly compressed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "[Content_Types].xml" and "xl/sharedStrings.xml" in parts:
                override = f'<Override PartName="/xl/sharedStrings.xml" ContentType="{SHARED_STRINGS_TYPE}" />'
                data = data.replace(b"</Types>", override.encode() + b"</Types>")
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
        for name, data in parts.items():
            target.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return out.getvalue()


def shared_strings(count: int) -> bytes:
    head = (
        f'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{count}" uniqueCount="{count}">'
    )
    return head.encode() + b"<si><t>x</t></si>" * count + b"</sst>"


def new_job(make_user, content: bytes) -> ImportJob:
    clerk = make_user(Role.CLERK)
    return import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile("people.xlsx", content),
        language="en",
    )


def test_an_xlsx_with_two_million_shared_strings_fails_its_job_before_openpyxl_reads_it(make_user, media, tmp_path):
    bomb = with_parts(workbook_bytes(tmp_path), {"xl/sharedStrings.xml": shared_strings(2_000_000)})
    assert len(bomb) < 200_000  # small on the wire, 32 MB of shared strings once unpacked
    job = run_import_job(new_job(make_user, bomb).pk)
    assert job.state == ImportJobState.FAILED and job.rows_done == 0
    assert job.error.startswith("The workbook is compressed far more than a spreadsheet is"), job.error
    assert not Citizen.objects.exists()


def test_the_upload_screen_refuses_an_xlsx_zip_bomb(make_user, client, media, tmp_path):
    sign_in(client, make_user(Role.CLERK))
    client.cookies["django_language"] = "en"
    bomb = with_parts(workbook_bytes(tmp_path), {"xl/sharedStrings.xml": shared_strings(2_000_000)})
    response = client.post(
        "/citizens/imports/new/", {"region": "310000", "file": SimpleUploadedFile("people.xlsx", bomb)}
    )
    assert response.status_code == 400
    assert "The workbook is compressed far more than a spreadsheet is" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_the_limits_message_is_translated(make_user, media, tmp_path):
    clerk = make_user(Role.CLERK)
    bomb = with_parts(workbook_bytes(tmp_path), {"xl/sharedStrings.xml": shared_strings(2_000_000)})
    job = import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile("people.xlsx", bomb),
        language="zh-hans",
    )
    job = run_import_job(job.pk)
    assert job.state == ImportJobState.FAILED and job.error.startswith("该工作簿的压缩比")


def sheet_with_dimension(tmp_path, rows: int) -> bytes:
    workbook = Workbook()  # not write-only: it declares the sheet's dimension
    sheet = workbook.active
    sheet.append(HEADER)
    for i in range(rows):
        sheet.append([new_id_number("310000"), f"人{i}", "", "310000", "resident", ""])
    path = tmp_path / "dimension.xlsx"
    workbook.save(path)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("setting", "limit", "build", "message"),
    [
        ("ECARD_IMPORT_XLSX_MAX_UNCOMPRESSED", 10_000, lambda p: workbook_bytes(p, 3), "The workbook unpacks to more"),
        (
            "ECARD_IMPORT_XLSX_MAX_SHARED_STRINGS",
            1_000,
            lambda p: with_parts(workbook_bytes(p), {"xl/sharedStrings.xml": shared_strings(100)}),
            "The workbook's shared strings unpack to more",
        ),
        ("ECARD_IMPORT_XLSX_MAX_MEMBERS", 5, lambda p: workbook_bytes(p), "The workbook has more than 5 parts"),
        ("ECARD_IMPORT_XLSX_MAX_ROWS", 10, lambda p: sheet_with_dimension(p, 20), "The sheet has more than 10 rows"),
    ],
)
def test_an_xlsx_past_a_configured_limit_fails_with_that_limits_message(
    make_user, media, tmp_path, settings, setting, limit, build, message
):
    content = build(tmp_path)
    setattr(settings, setting, limit)
    job = run_import_job(new_job(make_user, content).pk)
    assert job.state == ImportJobState.FAILED and job.error.startswith(message), job.error
    assert job.rows_done == 0 and not Citizen.objects.exists()


def test_a_workbook_under_the_limits_still_imports(make_user, media, tmp_path):
    job = new_job(make_user, sheet_with_dimension(tmp_path, 20))
    job = run_import_job(job.pk)
    assert (job.state, job.created, job.rows_total) == (ImportJobState.DONE, 20, 20), job.error
