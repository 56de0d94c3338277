"""A clerk imports a citizen file in a real browser while a real Celery worker runs the job."""

from __future__ import annotations

import csv
import io

import pytest

from insurance.models import Citizen, ImportJob, ImportJobState
from portal.models import Role
from testkit.browser import PASSWORD
from testkit.citizens import new_id_number
from testkit.imports import write_csv

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_clerk_uploads_a_file_watches_the_progress_bar_and_reads_the_error_report(
    page,
    url,
    screen,
    make_user,
    import_worker,
    tmp_path,
):
    import_worker("browser-import", concurrency=2, ECARD_IMPORT_CHUNK_ROWS="100")
    make_user(Role.CLERK, username="clerk-import", password=PASSWORD)
    rows = [[new_id_number("310000"), f"居民{i}", "13800000000", "310000", "resident", ""] for i in range(1500)]
    rows[10] = ["110101199001011234", "校验错", "", "310000", "resident", ""]  # row 12: wrong check character
    rows[20][4] = "retired"  # row 22: no such scheme
    path = write_csv(tmp_path / "居民名单.csv", rows)

    page.goto(url("/accounts/login/"))
    page.fill("input[name=login]", "clerk-import")
    page.fill("input[name=password]", PASSWORD)
    page.locator("form input[name=password]").press("Enter")
    page.wait_for_load_state()
    page.context.add_cookies([{"name": "django_language", "value": "en", "url": url("/")}])

    page.goto(url("/citizens/imports/"))
    screen("imports-empty")
    page.locator("a[href='/citizens/imports/new/']").first.click()
    page.wait_for_load_state()
    screen("upload-form")
    page.select_option("select[name=region]", "310000")
    page.set_input_files("input[name=file]", str(path))
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/citizens/imports/*/")
    screen("job-started")

    progress = page.locator("#import-progress")
    # A selector, not wait_for_function: its predicate is evaluated with eval(), which the CSP forbids.
    page.wait_for_selector("#import-progress[value='100']", state="attached", timeout=90_000)
    page.wait_for_selector("#import-error-rows tbody tr td:text-is('12')")  # the page reloaded with the errors
    screen("job-done")
    assert progress.get_attribute("value") == "100"
    job = ImportJob.objects.get()
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 1498, 2)
    assert page.locator("[data-field=created]").inner_text() == "1498"
    assert page.locator("#import-error-rows tbody tr").count() == 2
    assert Citizen.objects.count() == 1498

    with page.expect_download() as download_info:
        page.locator("#import-errors").click()
    report = list(csv.reader(io.StringIO(open(download_info.value.path(), encoding="utf-8-sig").read())))
    assert report == [
        ["Row number", "Column", "Error", "Submitted value"],
        ["12", "id_number", "The identity number's check character is wrong.", "110***********1234"],
        ["22", "scheme", "The scheme is 职工医保 (employee) or 居民医保 (resident).", "retired"],
    ]

    page.goto(url("/citizens/imports/"))
    screen("imports-list")
    assert page.locator("main table tbody tr").count() == 1
