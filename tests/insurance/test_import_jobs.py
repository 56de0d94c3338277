"""Citizen import as a background job: the screens, the job runner, and a real Celery worker.

The worker tests start `.venv/bin/celery -A portal worker` (testkit/processes.py) against the
test database and this run's Redis db; the file the clerk uploads is stored under a
temporary media folder that the worker is pointed at too.
"""

import csv
import datetime as dt
import io

import pytest
import redis
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation

from insurance.imports.jobs import import_job_create, requeue_stale_jobs, run_import_job
from insurance.models import Certificate, CertificateState, Citizen, ImportJob, ImportJobState, ImportRowError
from portal.actors import Actor
from portal.audit import verify_chain
from portal.models import AuditEvent, Role
from testkit.citizens import new_id_number
from testkit.imports import write_csv, write_xlsx
from testkit.processes import CeleryWorker, database_url_for_current_connection, wait_until
from testkit.screens import sign_in


def sign_in_en(client, user) -> None:
    """Signed in, reading English (new strings are not translated yet when these tests are written)."""
    sign_in(client, user)
    client.cookies["django_language"] = "en"


def good_and_bad_rows(good: int, region: str = "310000") -> tuple[list[list], list[int]]:
    """`good` valid rows with a bad one every tenth row; returns the rows and the bad rows' numbers."""
    rows, bad = [], []
    for i in range(good + good // 9):
        number = i + 2  # the header is row 1
        if i % 10 == 9:
            rows.append(["110101199001011234", f"坏{i}", "", region, "resident", ""])  # wrong check digit
            bad.append(number)
        else:
            rows.append([new_id_number(region), f"人{i}", "13800000000", region, "resident", ""])
    return rows, bad


def upload(client, path, region="310000"):
    with open(path, "rb") as handle:
        return client.post("/citizens/imports/new/", {"region": region, "file": handle})


# --- Screens, without a worker (the job is run in-process) ------------------------


@pytest.mark.django_db
def test_upload_form_refuses_wrong_type_broken_xlsx_and_oversized_files(make_user, client, media, settings):
    sign_in_en(client, make_user(Role.CLERK))
    settings.ECARD_IMPORT_MAX_BYTES = 200
    cases = [
        (SimpleUploadedFile("people.txt", b"id_number\n"), "Only .csv and .xlsx files"),
        (SimpleUploadedFile("people.xlsx", b"not a zip"), "not a readable XLSX"),
        (SimpleUploadedFile("people.csv", "id_number,name\n".encode("utf-16")), "not a text"),
        (SimpleUploadedFile("people.csv", b"x" * 201), "larger than"),
        (SimpleUploadedFile("people.csv", b"\xff\xfe\xfa" * 20), "not UTF-8"),
    ]
    for file, message in cases:
        response = client.post("/citizens/imports/new/", {"region": "310000", "file": file})
        assert response.status_code == 400
        assert message in response.content.decode(), message
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_an_auditor_cannot_upload_and_a_clerk_cannot_pick_another_region(make_user, client, media, tmp_path, regions):
    sign_in_en(client, make_user(Role.AUDITOR))
    assert client.get("/citizens/imports/new/").status_code == 403
    client.logout()
    sign_in_en(client, make_user(Role.CLERK, ("310000",)))
    path = write_csv(tmp_path / "a.csv", [[new_id_number("440000"), "甲", "", "440000", "resident", ""]])
    response = upload(client, path, region="440000")
    assert response.status_code == 400 and not ImportJob.objects.exists()


@pytest.mark.django_db
def test_another_regions_job_and_its_report_answer_404(make_user, client, media, tmp_path):
    clerk = make_user(Role.CLERK, ("310000",))
    path = write_csv(tmp_path / "a.csv", [[new_id_number(), "甲", "", "310000", "resident", ""]])
    with open(path, "rb") as handle:
        job = import_job_create(
            actor=Actor.for_user(clerk),
            user=clerk,
            region=clerk.regions.get(),
            upload=SimpleUploadedFile("a.csv", handle.read()),
        )
    sign_in_en(client, make_user(Role.CLERK, ("440000",)))
    for suffix in ("", "status/", "errors.csv"):
        assert client.get(f"/citizens/imports/{job.pk}/{suffix}").status_code == 404
    assert job.pk not in [j.pk for j in client.get("/citizens/imports/").context["page"]]
    client.logout()
    sign_in_en(client, make_user(Role.NATIONAL_OPERATOR, ()))
    assert client.get(f"/citizens/imports/{job.pk}/status/").json()["state"] == "queued"


@pytest.mark.django_db
def test_the_upload_is_audited_without_the_file_name(make_user, client, media, tmp_path):
    sign_in_en(client, make_user(Role.CLERK))
    path = write_csv(tmp_path / "张三的名单.csv", [[new_id_number(), "甲", "", "310000", "resident", ""]])
    response = upload(client, path)
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/citizens/imports/{job.pk}/"
    assert job.original_name == "张三的名单.csv" and job.state == ImportJobState.QUEUED
    event = AuditEvent.objects.get(action="citizen_import.upload")
    assert event.object_id == str(job.pk) and event.after == {"format": "csv", "size": path.stat().st_size}
    assert "张三" not in str(event.after) and "张三" not in job.file.name


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "message"),
    [
        (None, "身份证号的校验码错误。"),  # Chinese, the default
        ("en", "The identity number's check character is wrong."),
    ],
)
def test_the_error_report_is_written_in_the_uploaders_language(make_user, client, media, tmp_path, language, message):
    sign_in(client, make_user(Role.CLERK))
    if language:
        client.cookies["django_language"] = language
    path = write_csv(tmp_path / "a.csv", [["110101199001011234", "坏", "", "310000", "resident", ""]])
    upload(client, path)
    job = ImportJob.objects.get()
    with translation.override("en" if language is None else "zh-hans"):  # the worker's own language differs
        run_import_job(job.pk)
    assert ImportRowError.objects.get(job=job).message == message
    response = client.get(f"/citizens/imports/{job.pk}/errors.csv")
    report = b"".join(response.streaming_content).decode("utf-8-sig")
    assert message in report


@pytest.mark.django_db
def test_a_job_stopped_after_some_batches_is_resumed_from_its_checkpoint_exactly(make_user, media, tmp_path, settings):
    settings.ECARD_IMPORT_STALE_SECONDS = 60
    clerk = make_user(Role.CLERK)
    rows, bad = good_and_bad_rows(90)
    rows.insert(30, [rows[5][0], "改名", "", "310000", "employee", ""])  # row 32 updates row 7's citizen
    path = write_csv(tmp_path / "people.csv", rows)
    job = import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile("people.csv", path.read_bytes()),
    )

    run_import_job(job.pk, batch_size=20, max_batches=2)  # as if the worker died after two batches
    job.refresh_from_db()
    assert job.state == ImportJobState.RUNNING and job.checkpoint_row == 41 and job.rows_total == len(rows)
    first_created = job.created
    assert run_import_job(job.pk, batch_size=20).state == ImportJobState.RUNNING  # a live heartbeat: not taken over
    assert ImportJob.objects.get(pk=job.pk).checkpoint_row == 41

    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=job.heartbeat_at - dt.timedelta(minutes=5))
    assert requeue_stale_jobs() == 1  # (the task it queues is not run: no worker in this test)
    assert requeue_stale_jobs() == 0  # not again before that run has had its time
    job = run_import_job(job.pk, batch_size=20)

    bad_rows = [n if n < 32 else n + 1 for n in bad]
    assert job.state == ImportJobState.DONE and job.attempts == 2 and job.created > first_created
    assert (job.created, job.updated, job.failed) == (90, 1, len(bad))
    assert job.rows_done == job.rows_total == len(rows) and job.percent == 100
    assert Citizen.objects.count() == 90 and Certificate.objects.count() == 90
    assert sorted(ImportRowError.objects.filter(job=job).values_list("row", flat=True)) == bad_rows
    assert set(Certificate.objects.values_list("state", flat=True)) == {CertificateState.PENDING_ACTIVATION}
    assert Citizen.objects.filter(name="改名", scheme="employee").count() == 1
    batches = AuditEvent.objects.filter(action="citizen.import_batch")
    assert sum(e.after["created"] for e in batches) == 90
    assert sorted(c for e in batches for c, _ in e.after["citizens"]) == sorted(
        Citizen.objects.values_list("id", flat=True)
    )
    assert verify_chain() == []


@pytest.mark.django_db
def test_a_file_that_cannot_be_read_fails_the_job_with_its_reason(make_user, media):
    clerk = make_user(Role.CLERK)
    job = import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile("people.csv", b"id_number,name\n1,2\n"),
    )
    job = run_import_job(job.pk)
    assert job.state == ImportJobState.FAILED and "region_code" in job.error and job.rows_done == 0


# --- With a real Celery worker ----------------------------------------------------


@pytest.fixture
def worker_env(transactional_db, media):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    return {
        "DATABASE_URL": database_url_for_current_connection(),
        "REDIS_URL": settings.REDIS_URL,
        "ECARD_VAR_DIR": str(media),
        "ECARD_IMPORT_BATCH_ROWS": "50",
        "ECARD_IMPORT_STALE_SECONDS": "3",
        "ECARD_IMPORT_SWEEP_SECONDS": "1",
        "DB_CONN_MAX_AGE": "0",
    }


@pytest.fixture
def workers(worker_env):
    started: list[CeleryWorker] = []

    def start(name: str = "w") -> CeleryWorker:
        worker = CeleryWorker(env=worker_env, name=name, concurrency=2)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
        worker.dump_log()


def report_rows(client, job) -> list[list[str]]:
    response = client.get(f"/citizens/imports/{job.pk}/errors.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_a_worker_imports_the_good_rows_and_reports_the_bad_ones(workers, make_user, client, tmp_path, kind):
    workers()
    clerk = make_user(Role.CLERK)
    sign_in_en(client, clerk)
    rows, bad = good_and_bad_rows(120)
    rows.append([new_id_number("440000"), "外地", "", "440000", "resident", ""])  # not the job's region
    bad.append(len(rows) + 1)
    write = write_csv if kind == "csv" else write_xlsx
    path = write(tmp_path / f"people.{kind}", rows)

    assert upload(client, path).status_code == 302
    job = ImportJob.objects.get()
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, timeout=60, what="the import to finish")
    job.refresh_from_db()

    assert (job.state, job.created, job.updated, job.failed) == (ImportJobState.DONE, 120, 0, len(bad))
    assert job.rows_total == job.rows_done == len(rows)
    assert Citizen.objects.filter(region_id="310000").count() == 120 and not Citizen.objects.filter(region_id="440000")
    report = report_rows(client, job)
    assert report[0] == ["Row number", "Column", "Error", "Submitted value"]
    assert [int(r[0]) for r in report[1:]] == bad
    assert {r[1] for r in report[1:]} == {"id_number", "region_code"}
    assert "110101199001011234" not in str(report)  # the row's personal data is not repeated
    status = client.get(f"/citizens/imports/{job.pk}/status/").json()
    assert status["percent"] == 100 and status["finished"] and status["created"] == 120
    page = client.get(f"/citizens/imports/{job.pk}/").content.decode()
    assert 'value="100"' in page and "import_progress.js" in page


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_file_is_replaced_and_the_job_ends_with_exact_counts(workers, make_user, tmp_path):
    clerk = make_user(Role.CLERK)
    rows, bad = good_and_bad_rows(3600)
    path = write_csv(tmp_path / "people.csv", rows)
    first = workers("first")
    job = import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile("people.csv", path.read_bytes()),
    )
    wait_until(
        lambda: ImportJob.objects.get(pk=job.pk).checkpoint_row > 300,
        timeout=60,
        interval=0.02,
        what="some batches committed",
    )
    first.kill()  # SIGKILL mid-file, as a crash would
    killed_at = ImportJob.objects.get(pk=job.pk)
    assert killed_at.state == ImportJobState.RUNNING and killed_at.checkpoint_row < len(rows) + 1, (
        "the file was finished before the worker was killed: make it longer"
    )

    workers("second")  # its beat sweep finds the stale heartbeat and re-queues the job
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, timeout=90, what="the resumed import")
    job.refresh_from_db()

    assert job.state == ImportJobState.DONE and job.attempts >= 2
    assert (job.created, job.updated, job.failed) == (3600, 0, len(bad))
    assert Citizen.objects.count() == 3600 and Certificate.objects.count() == 3600
    assert Certificate.objects.values("citizen").distinct().count() == 3600
    assert sorted(ImportRowError.objects.filter(job=job).values_list("row", flat=True)) == bad
    assert verify_chain() == []


@pytest.mark.django_db
def test_a_redelivered_task_of_a_job_out_of_attempts_fails_the_job_instead_of_running_it(make_user, media, tmp_path):
    # acks_late + reject_on_worker_lost: a task whose worker was killed (say, for memory) comes
    # back; once the job has used its attempts, the task itself gives it up.
    from insurance.imports.jobs import MAX_ATTEMPTS
    from insurance.tasks import run_import

    clerk = make_user(Role.CLERK)
    path = write_csv(tmp_path / "a.csv", [[new_id_number(), "甲", "", "310000", "resident", ""]])
    job = import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile("a.csv", path.read_bytes()),
        language="en",
    )
    stale = job.created_at - dt.timedelta(hours=1)
    ImportJob.objects.filter(pk=job.pk).update(state=ImportJobState.RUNNING, attempts=MAX_ATTEMPTS, heartbeat_at=stale)
    run_import(job.pk)  # the task's own body, as the worker runs it
    job.refresh_from_db()
    assert job.state == ImportJobState.FAILED and job.attempts == MAX_ATTEMPTS
    assert job.error == f"The import stopped {MAX_ATTEMPTS} times without finishing; upload the file again."
    assert not Citizen.objects.exists() and job.finished_at is not None
    assert not job.file.storage.exists(job.file.name)
