"""Issue 16, finding 5, in a real browser, in Simplified Chinese and in English: a clerk reads the
columns on the upload screen, downloads the templates (their header in the screen's language),
fills the CSV one with Chinese scheme names, uploads it, and reads why each bad row was refused,
with the value it held."""

from __future__ import annotations

import csv
import io

import pytest
from openpyxl import load_workbook

from insurance.models import Citizen, ImportJob, ImportJobState
from portal.models import Role
from testkit.browser import LANGUAGES, PASSWORD, sign_in_with_password
from testkit.citizens import new_id_number

pytestmark = [pytest.mark.browser, pytest.mark.worker]


# What each language shows: the template's header, a column's format, the region refused and the
# report's columns.
WORDS = {
    "zh-hans": {
        "header": ["身份证号", "姓名", "手机号", "地区代码", "险种", "个人账户余额（分）"],
        "columns": ["身份证号", "姓名", "手机号", "地区代码", "险种", "个人账户余额（分）"],
        "id_format": "18 位：17 位数字加 1 位校验码（数字或 X）",
        "outside": "该地区不在您的管辖范围内（440000 广东省）",
        "unknown": "未知",
        "region_column": "地区代码 region_code",
        "phone_column": "手机号 phone",
        "report": ["行号", "列", "错误", "提交的值"],
    },
    "en": {
        "header": ["id_number", "name", "phone", "region_code", "scheme", "account_balance_fen"],
        "columns": ["Identity number", "Name", "Phone", "Region code", "Scheme", "Personal account balance (fen)"],
        "id_format": "18 characters: 17 digits and a check digit or X",
        "outside": "The region is outside your regions (440000 Guangdong)",
        "unknown": "Unknown",
        "region_column": "region_code",
        "phone_column": "phone",
        "report": ["Row number", "Column", "Error", "Submitted value"],
    },
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_clerk_fills_the_template_with_chinese_schemes_and_reads_the_refused_values(
    page, url, screen, make_user, import_worker, tmp_path, language
):
    import_worker("browser-import-templates")
    words = WORDS[language]
    make_user(Role.CLERK, username="clerk-template", password=PASSWORD)
    sign_in_with_password(page, url, screen, "clerk-template", "clerk", language)

    page.goto(url("/citizens/imports/new/"))
    screen("upload-columns")
    columns = page.locator("#import-columns tbody tr")
    assert columns.locator("th").all_inner_texts() == words["columns"]
    accepted = columns.first.locator("td").first  # the Chinese and the English header a file may use
    assert accepted.locator("span[lang=zh-Hans]").inner_text() == "身份证号"
    assert accepted.locator("span.mono").inner_text() == "id_number"
    first = columns.first.inner_text()
    assert words["id_format"] in first and "11010519491231002X" in first, first

    with page.expect_download() as xlsx_download:
        page.locator("#import-template-xlsx").click()
    sheet = load_workbook(io.BytesIO(xlsx_download.value.path().read_bytes())).worksheets[0]
    assert list(next(sheet.iter_rows(values_only=True))) == words["header"]

    with page.expect_download() as csv_download:
        page.locator("#import-template-csv").click()
    text = open(csv_download.value.path(), encoding="utf-8").read()
    assert text.startswith("\ufeff" + ",".join(words["header"]) + "\n")
    header, example = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    rows = [
        example,  # row 2: the template's example, kept
        [new_id_number("310000"), "王居民", "021-62345678", "310000", "居民医保", ""],  # row 3
        [new_id_number("440000"), "粤参保", "", "440000", "职工医保", ""],  # row 4: not the import's region
        [new_id_number("310000"), "短号码", "12345", "310000", "城乡居民基本医疗保险", ""],  # row 5
    ]
    path = tmp_path / "填好的模板.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])

    region = page.locator("select[name=region] option[value='310000']").inner_text()
    assert region == {"zh-hans": "310000 上海市", "en": "310000 Shanghai"}[language], region
    page.select_option("select[name=region]", "310000")
    page.set_input_files("input[name=file]", str(path))
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/citizens/imports/*/")
    page.wait_for_selector("#import-error-rows tbody tr td:text-is('5')", timeout=60_000)
    screen("job-done")
    job = ImportJob.objects.get()
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 2, 2)
    assert dict(Citizen.objects.values_list("name", "scheme")) == {"张三": "employee", "王居民": "resident"}
    table = page.locator("#import-error-rows").inner_text()
    assert words["outside"] in table and words["unknown"] not in table, table
    assert (
        words["region_column"] in table and "*****" in table and "12345" not in table.replace("010-12345678", "")
    )  # the short phone, masked

    with page.expect_download() as report_download:
        page.locator("#import-errors").click()
    report = list(csv.reader(io.StringIO(open(report_download.value.path(), encoding="utf-8-sig").read())))
    assert report[0] == words["report"]
    assert [(r[0], r[1], r[3]) for r in report[1:]] == [
        ("4", words["region_column"], "440000"),
        ("5", words["phone_column"], "*****"),
    ]
