"""Issue 16, finding 5: an import a Chinese back-office user gets right the first time.

The columns are shown in Chinese with an example and a template; Chinese header and
scheme names are accepted; a row refused for its region, its phone or any other value
says why, and the error report repeats the value (masked when it is personal data)."""

import csv
import io

import pytest
from django.utils import translation
from openpyxl import load_workbook

from insurance.identity import parse_identity_number
from insurance.imports.jobs import run_import_job
from insurance.imports.reading import ImportFileError, read_stream
from insurance.imports.validation import validate_row
from insurance.models import Citizen, ImportJob
from portal.models import Role
from testkit.citizens import new_id_number
from testkit.imports import write_csv, write_xlsx
from testkit.screens import sign_in

CHINESE_HEADER = ["身份证号", "姓名", "手机号", "地区代码", "险种", "个人账户余额（分）"]


def upload(client, path, region="310000"):
    with open(path, "rb") as handle:
        return client.post("/citizens/imports/new/", {"region": region, "file": handle})


def run_uploaded(client, path, region="310000") -> ImportJob:
    assert upload(client, path, region).status_code == 302
    job = ImportJob.objects.latest("pk")
    run_import_job(job.pk)
    job.refresh_from_db()
    return job


def report_rows(client, job) -> list[list[str]]:
    response = client.get(f"/citizens/imports/{job.pk}/errors.csv")
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))


def rows_of(data: bytes, fmt: str):
    return list(read_stream(io.BytesIO(data), fmt))


# --- Chinese headers and scheme names ---------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_chinese_header_and_scheme_names_are_imported(make_user, client, media, tmp_path, kind):
    sign_in(client, make_user(Role.CLERK))
    numbers = [new_id_number("310000") for _ in range(5)]
    rows = [
        [numbers[0], "张职工", "13812345678", "310000", "职工医保", "1200"],
        [numbers[1], "李职工", "13812345679", "310000", "职工基本医疗保险", ""],
        [numbers[2], "王居民", "", "310000", "居民医保", ""],
        [numbers[3], "赵居民", "021-62345678", "310000", "城乡居民基本医疗保险", ""],
        [numbers[4], "钱英文", "", "310000", "resident", ""],
    ]
    write = write_csv if kind == "csv" else write_xlsx
    job = run_uploaded(client, write(tmp_path / f"people.{kind}", rows, header=CHINESE_HEADER))
    assert (job.created, job.failed) == (5, 0), list(job.row_errors.values_list("row", "column", "message"))
    schemes = dict(Citizen.objects.values_list("name", "scheme"))
    assert schemes == {
        "张职工": "employee",
        "李职工": "employee",
        "王居民": "resident",
        "赵居民": "resident",
        "钱英文": "resident",
    }


def test_a_chinese_header_missing_a_column_names_it_in_the_message():
    data = "身份证号,姓名,手机号,地区代码\n1,2,3,4\n".encode()
    with translation.override("en"), pytest.raises(ImportFileError, match=r"lacks the column\(s\): scheme\.$"):
        rows_of(data, "csv")


def test_an_unknown_scheme_name_is_refused_with_the_accepted_names(regions):
    raw = {"id_number": new_id_number("310000"), "name": "甲", "phone": "", "region_code": "310000", "scheme": "医保"}
    with translation.override("zh-hans"):
        _row, errors = validate_row(2, raw, {"310000": regions["310000"]}, pilot_regions=regions)
    assert [e.column for e in errors] == ["scheme"]
    assert "职工医保" in errors[0].message and "居民医保" in errors[0].message


# --- The region outside the import ---------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "expected"),
    [("zh-hans", "该地区不在您的管辖范围内（440000 广东省）"), ("en", "outside your regions (440000 Guangdong)")],
)
def test_a_pilot_region_outside_the_import_is_not_called_unknown(regions, language, expected):
    raw = {
        "id_number": new_id_number("440000"),
        "name": "甲",
        "phone": "",
        "region_code": "440000",
        "scheme": "resident",
    }
    with translation.override(language):
        _row, errors = validate_row(2, raw, {"310000": regions["310000"]}, pilot_regions=regions)
        unknown = validate_row(3, raw | {"region_code": "990000"}, {"310000": regions["310000"]}, pilot_regions=regions)
    assert [(e.column, e.message) for e in errors] == [("region_code", errors[0].message)]
    assert expected in errors[0].message
    with translation.override(language):
        assert unknown[1][0].message == translation.gettext("Unknown pilot region code.")


# --- Phones ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone", ["13812345678", "19912345678", "010-62345678", "02162345678", "0755-1234567", "0571 8765 4321", ""]
)
def test_a_mobile_or_a_landline_with_its_area_code_is_accepted(regions, phone):
    raw = {"id_number": new_id_number("310000"), "name": "甲", "phone": phone, "region_code": "310000"}
    row, errors = validate_row(2, raw | {"scheme": "resident"}, {"310000": regions["310000"]})
    assert errors == [] and row is not None


@pytest.mark.parametrize("phone", ["12345", "12812345678", "1381234567", "138123456789", "62345678", "+1 555 0100"])
def test_a_short_or_foreign_phone_is_refused_with_a_clear_message(regions, phone):
    raw = {"id_number": new_id_number("310000"), "name": "甲", "phone": phone, "region_code": "310000"}
    with translation.override("zh-hans"):
        _row, errors = validate_row(2, raw | {"scheme": "resident"}, {"310000": regions["310000"]})
    assert [e.column for e in errors] == ["phone"]
    assert "11 位手机号" in errors[0].message and "区号" in errors[0].message


def test_the_demo_generators_make_valid_phones():
    import random

    from backoffice.demo_plan import PHONE_PREFIXES
    from insurance.imports.validation import phone_is_valid

    rng = random.Random(16)
    for prefix in PHONE_PREFIXES:
        assert phone_is_valid(prefix + f"{rng.randrange(10**8):08d}"), prefix
    assert phone_is_valid("13800000000")  # testkit's citizens


# --- The error report repeats the rejected value -------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "header"),
    [(None, ["行号", "列", "错误", "提交的值"]), ("en", ["Row number", "Column", "Error", "Submitted value"])],
)
def test_the_error_report_repeats_the_rejected_values_masked_when_personal(
    make_user, client, media, tmp_path, language, header
):
    sign_in(client, make_user(Role.CLERK))
    if language:
        client.cookies["django_language"] = language
    rows = [
        ["110101199001011234", "坏号", "", "310000", "resident", ""],  # row 2: wrong check digit
        [new_id_number("310000"), "短号", "12345", "310000", "resident", ""],  # row 3
        [new_id_number("310000"), "险种", "", "310000", "医保", ""],  # row 4
        [new_id_number("310000"), "余额", "", "310000", "resident", "-5"],  # row 5
    ]
    job = run_uploaded(client, write_csv(tmp_path / "bad.csv", rows))
    report = report_rows(client, job)
    assert report[0] == header
    values = {(r[0], r[3]) for r in report[1:]}
    assert values == {("2", "110***********1234"), ("3", "*****"), ("4", "医保"), ("5", "'-5")}
    assert "110101199001011234" not in str(report)


@pytest.mark.django_db
def test_a_rejected_phone_is_masked_in_the_report(make_user, client, media, tmp_path):
    sign_in(client, make_user(Role.CLERK))
    job = run_uploaded(
        client,
        write_csv(tmp_path / "p.csv", [[new_id_number("310000"), "甲", "12812345678", "310000", "resident", ""]]),
    )
    report = report_rows(client, job)
    assert report[1][3] == "128****5678"
    assert "12812345678" not in str(report)


# --- The screen and its templates ------------------------------------------------------


@pytest.mark.django_db
def test_the_upload_screen_lists_the_columns_in_chinese_with_an_example(make_user, client):
    sign_in(client, make_user(Role.CLERK))
    page = client.get("/citizens/imports/new/").content.decode()
    for text in ("身份证号", "id_number", "个人账户余额（分）", "account_balance_fen", "职工医保", "必填", "选填"):
        assert text in page, text
    assert "/citizens/imports/template.csv" in page and "/citizens/imports/template.xlsx" in page


@pytest.mark.django_db
def test_the_csv_template_has_a_bom_the_header_and_an_example_that_imports(make_user, client, media, tmp_path):
    sign_in(client, make_user(Role.CLERK))
    response = client.get("/citizens/imports/template.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    header, example = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert header[:5] == CHINESE_HEADER[:5]
    parse_identity_number(example[0])  # a valid number (the standard's published example)
    (tmp_path / "template.csv").write_bytes(response.content)
    job = run_uploaded(client, tmp_path / "template.csv")
    assert (job.created, job.failed) == (1, 0)


@pytest.mark.django_db
def test_the_xlsx_template_has_the_header_and_an_example(make_user, client):
    sign_in(client, make_user(Role.CLERK))
    response = client.get("/citizens/imports/template.xlsx")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = load_workbook(io.BytesIO(response.content)).worksheets[0]
    header, example = [list(r) for r in sheet.iter_rows(values_only=True)][:2]
    assert header[:5] == CHINESE_HEADER[:5]
    parse_identity_number(str(example[0]))
    assert rows_of(response.content, "xlsx")[0][1]["id_number"] == example[0]


@pytest.mark.django_db
def test_the_templates_need_a_signed_in_user(client):
    for suffix in ("csv", "xlsx"):
        response = client.get(f"/citizens/imports/template.{suffix}")
        assert response.status_code in (302, 403)
