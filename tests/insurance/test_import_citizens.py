"""`manage.py import_citizens` and insurance.imports, with real files."""

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import tracemalloc
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from insurance import services
from insurance.identity import make_identity_number
from insurance.imports.reading import read_rows
from insurance.imports.validation import RowError
from insurance.imports.writing import ImportSummary, import_rows
from insurance.models import Certificate, Citizen
from portal.actors import Actor
from testkit.citizens import new_id_number
from testkit.imports import HEADER, write_csv, write_xlsx

BASE_DIR = Path(__file__).resolve().parents[2]


def run(path, *extra) -> tuple[dict, str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_citizens", str(path), *extra, stdout=out, stderr=err)
    lines = out.getvalue().strip().splitlines()
    return json.loads(lines[-1]), out.getvalue(), err.getvalue()


def citizen_by_number(number: str) -> Citizen:
    return Citizen.objects.get(pk=services.find_citizen_id_by_id_number(number))


@pytest.mark.django_db
@pytest.mark.parametrize("bom", [False, True])
def test_a_csv_creates_new_citizens_each_with_a_pending_card(regions, tmp_path, bom):
    numbers = [new_id_number("310000"), new_id_number("440000")]
    path = write_csv(
        tmp_path / "citizens.csv",
        [
            [numbers[0], "张三明", "13812345678", "310000", "resident", "1200"],
            [numbers[1], "李四", "", "440000", "employee", ""],
        ],
        bom=bom,
    )

    summary, out, err = run(path)

    assert summary == {"created": 2, "updated": 0, "failed": 0}
    assert err == ""
    first = citizen_by_number(numbers[0])
    assert (first.name, first.phone, first.region_id, first.scheme) == ("张三明", "13812345678", "310000", "resident")
    assert citizen_by_number(numbers[1]).region_id == "440000"
    for citizen in Citizen.objects.all():
        assert list(Certificate.objects.filter(citizen=citizen).values_list("state", flat=True)) == [
            "pending_activation"
        ]


@pytest.mark.django_db
def test_an_existing_citizen_is_updated_and_gets_no_second_card(make_citizen, tmp_path):
    citizen = make_citizen("310000", name="王五", phone="13800000000", scheme="resident", with_card=True)
    path = write_csv(
        tmp_path / "update.csv", [[citizen.id_number.lower(), "王五六", "13900000000", "310000", "employee", "0"]]
    )

    summary, _, _ = run(path)

    assert summary == {"created": 0, "updated": 1, "failed": 0}
    citizen = Citizen.objects.get(pk=citizen.pk)
    assert (citizen.name, citizen.phone, citizen.scheme) == ("王五六", "13900000000", "employee")
    assert Certificate.objects.filter(citizen=citizen).count() == 1


@pytest.mark.django_db
def test_bad_rows_are_reported_with_row_column_and_reason_and_good_rows_are_imported(regions, tmp_path):
    good = [new_id_number(), new_id_number()]
    bad_checksum = good[0][:17] + ("0" if good[0][17] != "0" else "1")
    rows = [
        [good[0], "好人", "13811112222", "310000", "resident", "100"],  # row 2
        [bad_checksum, "坏号码", "", "310000", "resident", ""],  # row 3
        [new_id_number(), "未知地区", "", "999999", "resident", ""],  # row 4
        [new_id_number(), "错方案", "", "310000", "gold", ""],  # row 5
        [new_id_number(), "名" * 65, "", "310000", "resident", ""],  # row 6
        [new_id_number(), "小数", "", "310000", "resident", "12.5"],  # row 7
        [new_id_number(), "负数", "", "310000", "resident", "-1"],  # row 8
        [new_id_number(), "短行", "", "310000"],  # row 9: the scheme column is missing
        [new_id_number(), "", "", "310000", "resident", ""],  # row 10
        [good[1], "也好", "", "310000", "employee", ""],  # row 11
    ]
    path = write_csv(tmp_path / "mixed.csv", rows)
    report = tmp_path / "errors.csv"

    summary, out, err = run(path, "--errors", str(report))

    assert summary == {"created": 2, "updated": 0, "failed": 8}
    assert json.loads(out.strip().splitlines()[-1]) == summary
    with report.open(encoding="utf-8-sig", newline="") as handle:
        reported = list(csv.reader(handle))
    assert reported[0] == ["行号", "列", "错误", "提交的值"], "the screen's report, in the default language"
    assert reported[3][1] == "险种 scheme" and reported[3][3] == "gold", (
        "the column named in Chinese, the value repeated"
    )
    assert bad_checksum not in report.read_text(encoding="utf-8-sig"), "identity numbers are masked in the report"
    assert [(r[0], r[1].split()[-1]) for r in reported[1:]] == [
        ("3", "id_number"),
        ("4", "region_code"),
        ("5", "scheme"),
        ("6", "name"),
        ("7", "account_balance_fen"),
        ("8", "account_balance_fen"),
        ("9", "scheme"),
        ("10", "name"),
    ]
    assert all(r[2] for r in reported[1:])
    assert "row 3, id_number:" in err
    assert bad_checksum not in err  # personal data stays out of the report
    assert Citizen.objects.count() == 2
    assert {c.name for c in Citizen.objects.all()} == {"好人", "也好"}


@pytest.mark.django_db
def test_a_row_refused_by_the_service_leaves_nothing_behind_and_is_reported(make_citizen, tmp_path):
    citizen = make_citizen("310000")
    path = write_csv(tmp_path / "moved.csv", [[citizen.id_number, "王五", "", "440000", "resident", ""]])
    report = tmp_path / "errors.csv"

    summary, _, _ = run(path, "--errors", str(report))

    assert summary == {"created": 0, "updated": 0, "failed": 1}
    assert list(csv.reader(report.open(encoding="utf-8-sig")))[1][:2] == [
        "2",
        "身份证号 id_number",
    ]  # the same refusal as any number already registered
    assert Citizen.objects.get(pk=citizen.pk).region_id == "310000"


@pytest.mark.django_db
def test_an_xlsx_workbook_is_imported_with_numeric_cells(regions, tmp_path):
    numbers = [new_id_number("370000"), new_id_number("370000")]
    path = write_xlsx(
        tmp_path / "citizens.xlsx",
        [
            [numbers[0], "赵六", 13712345678, "370000", "employee", 5000],
            [numbers[1], "钱七", None, 370000, "resident", None],
            [None, None, None, None, None, None],  # a blank row is skipped
            [numbers[1][:17], "短号", None, "370000", "resident", -3],
        ],
    )

    summary, _, err = run(path)

    assert summary == {"created": 2, "updated": 0, "failed": 1}
    assert citizen_by_number(numbers[0]).phone == "13712345678"
    assert citizen_by_number(numbers[1]).region_id == "370000"
    assert "row 5, id_number" in err
    assert "row 5, account_balance_fen" in err


@pytest.mark.django_db
def test_a_file_without_a_required_column_is_refused_as_a_whole(regions, tmp_path):
    path = write_csv(
        tmp_path / "nophone.csv",
        [[new_id_number(), "张三", "310000", "resident"]],
        header=["id_number", "name", "region_code", "scheme"],
    )

    with pytest.raises(CommandError, match="phone"):
        run(path)

    assert not Citizen.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["citizens.txt", "missing.csv"])
def test_an_unsupported_or_missing_file_is_a_clear_command_error(regions, tmp_path, name):
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("id_number\n", encoding="utf-8")

    with pytest.raises(CommandError):
        run(path)


@pytest.mark.django_db
def test_a_broken_xlsx_is_a_clear_command_error(regions, tmp_path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"not a zip file")

    with pytest.raises(CommandError, match="XLSX"):
        run(path)


@pytest.mark.django_db
def test_import_rows_reports_progress_and_respects_the_clerks_regions(regions):
    rows = [
        (
            i + 2,
            {
                "id_number": new_id_number("310000" if i % 2 else "440000"),
                "name": f"人{i}",
                "phone": "",
                "region_code": "310000" if i % 2 else "440000",
                "scheme": "resident",
            },
        )
        for i in range(10)
    ]
    seen: list[tuple[int, int, int]] = []
    errors: list[RowError] = []

    summary = import_rows(
        rows,
        actor=Actor.system("test"),
        on_error=errors.append,
        progress_every=4,
        progress=lambda s: seen.append((s.created, s.updated, s.failed)),
        region_codes={"310000"},
    )

    assert summary.as_dict() == {"created": 5, "updated": 0, "failed": 5}
    assert {e.column for e in errors} == {"region_code"}
    assert seen[-1] == (5, 0, 5)
    assert [sum(s) for s in seen] == [4, 8, 10]
    assert not Citizen.objects.filter(region_id="440000").exists()


def test_reading_a_large_csv_streams_in_flat_memory(tmp_path):
    path = tmp_path / "large.csv"
    number = make_identity_number("310101", dt.date(1980, 1, 1), 1)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(100_000):
            writer.writerow([number, f"姓名{i}", "13812345678", "310000", "resident", str(i)])
    size = path.stat().st_size

    tracemalloc.start()
    try:
        count = sum(1 for _ in read_rows(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 100_000
    assert size > 5_000_000
    assert peak < 1_000_000, peak  # a fraction of the file: nothing is loaded whole


_RSS_PROBE = """
import resource, sys
import django
django.setup()
from insurance.imports.reading import read_rows
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = sum(1 for _ in read_rows(sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(count, after - before)
"""


def test_reading_a_large_xlsx_streams_in_flat_memory(tmp_path):
    # Peak resident memory of a fresh process (tracemalloc would make openpyxl crawl).
    number = make_identity_number("310101", dt.date(1980, 1, 1), 1)
    path = write_xlsx(
        tmp_path / "large.xlsx", ([number, f"姓名{i}", "13812345678", "310000", "resident", i] for i in range(20_000))
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="portal.settings")

    result = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(path)],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )

    count, growth_kib = map(int, result.stdout.split())
    assert count == 20_000
    # Loading this workbook whole grows the process by about 55 MB; streaming it, about 8.
    assert growth_kib < 15_000, growth_kib


def test_the_summary_counts_rows_done():
    assert ImportSummary(created=2, updated=1, failed=3).rows_done == 6
