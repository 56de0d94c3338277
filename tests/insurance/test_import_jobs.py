"""Citizen import as a background job: the screens, the job runner, and a real Celery worker.

The worker tests start `.venv/bin/celery -A portal worker` (testkit/processes.py) against the
test database and this run's Redis db; the file the clerk uploads is stored under a
temporary media folder that the worker is pointed at too.
"""

import csv
import datetime as dt
import io
import logging

import psycopg
import pytest
import redis
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone, translation

from insurance.imports.jobs import claim_chunk, import_job_create, requeue_stale_jobs, run_import_job, split_import
from insurance.models import (
    Certificate,
    Citizen,
    ImportChunk,
    ImportChunkState,
    ImportJob,
    ImportJobState,
    ImportRowError,
)
from insurance.tasks import import_chunks
from portal.actors import Actor
from portal.audit import verify_chain
from portal.models import AuditEvent, Role
from testkit.citizens import new_id_number
from testkit.imports import write_csv, write_xlsx
from testkit.processes import CeleryWorker, database_url_for_current_connection, free_port, wait_until
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


def new_job(clerk, path, name="people.csv"):
    return import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile(name, path.read_bytes()),
        language="en",
    )


def assert_imported_once(job, good: int, updated: int, bad_rows: list[int]) -> None:
    """Counts exact, every citizen once with one card, every bad row reported once."""
    assert job.state == ImportJobState.DONE, job.error
    assert (job.created, job.updated, job.failed) == (good, updated, len(bad_rows))
    assert job.rows_done == job.rows_total == good + updated + len(bad_rows) and job.percent == 100
    assert Citizen.objects.count() == good and Certificate.objects.count() == good
    assert Certificate.objects.values("citizen").distinct().count() == good
    assert sorted(ImportRowError.objects.filter(job=job).values_list("row", flat=True)) == bad_rows
    batches = AuditEvent.objects.filter(action="citizen.import_batch")
    assert sorted(c for e in batches for c, _ in e.after["citizens"]) == sorted(
        Citizen.objects.values_list("id", flat=True)
    )
    assert not ImportChunk.objects.filter(job=job).exclude(payload=b"").exists()  # emptied at the end
    assert not job.file.storage.exists(job.file.name)
    assert verify_chain() == []


@pytest.mark.django_db
def test_a_split_stopped_midway_is_resumed_from_its_checkpoint_exactly(make_user, media, tmp_path, settings):
    settings.ECARD_IMPORT_STALE_SECONDS = 60
    clerk = make_user(Role.CLERK)
    rows, bad = good_and_bad_rows(90)
    rows.insert(30, [rows[5][0], "改名", "", "310000", "employee", ""])  # row 32 updates row 7's citizen
    path = write_csv(tmp_path / "people.csv", rows)
    job = new_job(clerk, path)

    run_import_job(job.pk, chunk_rows=20, max_chunks=2)  # as if the worker died after cutting two chunks
    job.refresh_from_db()
    assert job.state == ImportJobState.RUNNING and job.split_row == 41 and job.chunks_total is None
    assert job.rows_total == len(rows) and job.rows_done == 40 and job.percent == 40 * 100 // len(rows)
    assert list(ImportChunk.objects.values_list("index", "first_row", "last_row", "state")) == [
        (0, 2, 21, ImportChunkState.DONE),
        (1, 22, 41, ImportChunkState.DONE),
    ]
    assert run_import_job(job.pk, chunk_rows=20).state == ImportJobState.RUNNING  # a live heartbeat: not taken over
    assert ImportJob.objects.get(pk=job.pk).split_row == 41 and ImportChunk.objects.count() == 2

    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=job.heartbeat_at - dt.timedelta(minutes=5))
    assert requeue_stale_jobs() == 1  # (the task it queues is not run: no worker in this test)
    assert requeue_stale_jobs() == 0  # not again before that run has had its time
    job = run_import_job(job.pk, chunk_rows=20)

    assert job.attempts == 2 and job.chunks_total == 6
    ranges = list(ImportChunk.objects.values_list("first_row", "last_row"))
    assert ranges == [(2 + 20 * i, min(21 + 20 * i, len(rows) + 1)) for i in range(6)]  # no row cut twice or lost
    assert_imported_once(job, 90, 1, [n if n < 32 else n + 1 for n in bad])
    assert Citizen.objects.filter(name="改名", scheme="employee").count() == 1


@pytest.mark.django_db
def test_a_chunk_whose_worker_fell_silent_is_claimed_again_and_counted_once(make_user, media, tmp_path, settings):
    settings.ECARD_IMPORT_STALE_SECONDS = 60
    clerk = make_user(Role.CLERK)
    rows, bad = good_and_bad_rows(90)
    job = new_job(clerk, write_csv(tmp_path / "people.csv", rows))
    split_import(job.pk, chunk_rows=25)
    dead = claim_chunk(job.pk, worker="dead worker")  # claimed, then its worker died before committing
    assert dead is not None and dead.index == 0 and dead.attempts == 1

    job = run_import_job(job.pk, worker="live worker")  # takes every other chunk, not the live-looking one
    assert job.state == ImportJobState.RUNNING and job.rows_done == len(rows) - 25
    ImportChunk.objects.filter(pk=dead.pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    assert requeue_stale_jobs() == 1
    job = run_import_job(job.pk, worker="second worker")

    chunk = ImportChunk.objects.get(pk=dead.pk)
    assert (chunk.state, chunk.attempts, chunk.claimed_by) == (ImportChunkState.DONE, 2, "second worker")
    assert set(ImportChunk.objects.exclude(pk=dead.pk).values_list("claimed_by", flat=True)) == {"live worker"}
    assert_imported_once(job, 90, 0, bad)

    # The dead run's late commit is fenced off: its token is spent.
    assert claim_chunk(job.pk, worker="x") is None


@pytest.mark.django_db
def test_chunks_are_stored_encrypted_and_a_tampered_one_fails_the_job(make_user, media, tmp_path):
    clerk = make_user(Role.CLERK)
    number = new_id_number()
    path = write_csv(
        tmp_path / "people.csv",
        [
            [number, "张秘密", "13912345678", "310000", "resident", ""],
            [new_id_number(), "乙", "", "310000", "resident", ""],
        ],
    )
    job = new_job(clerk, path)
    split_import(job.pk, chunk_rows=1)
    first, second = ImportChunk.objects.order_by("index")
    stored = bytes(first.payload)
    for clear in (number.encode(), "张秘密".encode(), b"13912345678", b"310000"):
        assert clear not in stored
    ImportChunk.objects.filter(pk=second.pk).update(payload=stored)  # moved to another chunk: does not decrypt
    job = run_import_job(job.pk)
    assert job.state == ImportJobState.FAILED and "altered or damaged" in job.error
    assert (job.created, job.rows_done) == (1, 1) and Citizen.objects.count() == 1
    assert not ImportChunk.objects.exclude(payload=b"").exists() and not job.file.storage.exists(job.file.name)


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
        "ECARD_IMPORT_CHUNK_ROWS": "50",
        "ECARD_IMPORT_STALE_SECONDS": "3",
        "ECARD_IMPORT_SWEEP_SECONDS": "1",
        "DB_CONN_MAX_AGE": "0",
    }


@pytest.fixture
def workers(worker_env):
    started: list[CeleryWorker] = []

    def start(name: str = "w", *, concurrency: int = 2, beat: bool = True, **env: str) -> CeleryWorker:
        worker = CeleryWorker(env={**worker_env, **env}, name=name, concurrency=concurrency, beat=beat)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
        worker.dump_log()


def claimed_by(job, worker: CeleryWorker) -> list[int]:
    """The indexes of the job's chunks that `worker` claimed last."""
    chunks = ImportChunk.objects.filter(job=job, claimed_by__startswith=f"{worker.name}@")
    return list(chunks.values_list("index", flat=True))


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
def test_two_worker_processes_share_the_chunks_and_the_counts_are_exact(workers, make_user, tmp_path):
    clerk = make_user(Role.CLERK)
    rows, bad = good_and_bad_rows(1800)
    rows.insert(1000, [rows[5][0], "改名", "", "310000", "employee", ""])  # updates row 7's citizen
    bad = [n if n < 1002 else n + 1 for n in bad]
    first, second = workers("first", concurrency=1), workers("second", concurrency=1, beat=False)
    job = new_job(clerk, write_csv(tmp_path / "people.csv", rows))
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, timeout=120, what="the import to finish")
    job.refresh_from_db()

    assert job.chunks_total == ImportChunk.objects.filter(job=job).count() == 41  # 2,001 rows, 50 a chunk
    by_first, by_second = claimed_by(job, first), claimed_by(job, second)
    assert by_first and by_second, "one process imported every chunk"
    assert sorted(by_first + by_second) == list(range(41))
    assert set(ImportChunk.objects.filter(job=job).values_list("attempts", flat=True)) == {1}
    assert_imported_once(job, 1800, 1, bad)
    assert Citizen.objects.filter(name="改名", scheme="employee").count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_chunk_is_replaced_and_the_job_ends_with_exact_counts(workers, make_user, tmp_path):
    clerk = make_user(Role.CLERK)
    rows, bad = good_and_bad_rows(3600)
    first = workers("first", ECARD_IMPORT_CHUNK_ROWS="200")  # two threads: two chunks in flight
    job = new_job(clerk, write_csv(tmp_path / "people.csv", rows))
    wait_until(
        lambda: (
            ImportJob.objects.get(pk=job.pk).rows_done > 600
            and ImportChunk.objects.filter(job=job, state=ImportChunkState.RUNNING).exists()
        ),
        timeout=60,
        interval=0.02,
        what="some chunks committed and one running",
    )
    first.kill()  # SIGKILL mid-chunk, as a crash would
    killed_at = ImportJob.objects.get(pk=job.pk)
    assert killed_at.state == ImportJobState.RUNNING and killed_at.rows_done < len(rows), (
        "the file was finished before the worker was killed: make it longer"
    )
    cut_off = list(ImportChunk.objects.filter(job=job, state=ImportChunkState.RUNNING).values_list("pk", flat=True))
    assert cut_off and claimed_by(job, first), "the worker was killed between chunks"

    second = workers("second")  # its beat sweep finds the silent job and queues its chunks again
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, timeout=90, what="the resumed import")
    job.refresh_from_db()

    for chunk in ImportChunk.objects.filter(pk__in=cut_off):  # claimed again once their heartbeat was stale
        assert chunk.state == ImportChunkState.DONE and chunk.attempts == 2
        assert chunk.claimed_by.startswith(f"{second.name}@")
    assert_imported_once(job, 3600, 0, bad)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_number_in_two_chunks_imported_at_once_gives_one_citizen_and_one_update(workers, make_user, tmp_path):
    """Two workers import two chunks that share five identity numbers at the same moment: one
    COPY waits on the other's uncommitted numbers in the unique index and fails when it commits;
    that chunk looks its numbers up again and updates those five citizens."""
    clerk = make_user(Role.CLERK)
    first_chunk = [[new_id_number(), f"甲{i}", "", "310000", "resident", ""] for i in range(50)]
    second_chunk = [[new_id_number(), f"乙{i}", "", "310000", "resident", ""] for i in range(45)]
    shared = [row[0] for row in first_chunk[10:15]]
    second_chunk[20:20] = [[number, f"改{i}", "", "310000", "employee", ""] for i, number in enumerate(shared)]
    job = new_job(clerk, write_csv(tmp_path / "people.csv", first_chunk + second_chunk))
    split_import(job.pk, chunk_rows=50)  # in this process; the workers get the two chunks
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # (so that one worker cannot prefetch both claims)
    assert ImportJob.objects.get(pk=job.pk).chunks_total == 2

    # Hold the job's row: each chunk commits the job's counts last, so the first chunk's citizens
    # stay uncommitted until both chunks are in the middle of their writes.
    with psycopg.connect(database_url_for_current_connection()) as holder:
        holder.execute("SELECT id FROM insurance_importjob WHERE id = %s FOR UPDATE", [job.pk])
        first = workers("first", concurrency=1, beat=False)
        second = workers("second", concurrency=1, beat=False)
        for _n in range(4):
            import_chunks.delay(job.pk)

        def waiting() -> list[str]:
            with connection.cursor() as cursor:  # not the holder's: a transaction sees one snapshot of the stats
                cursor.execute(
                    "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' ORDER BY query"
                )
                return [query.split(" (")[0] for (query,) in cursor.fetchall()]

        # One chunk waits on the job's row, the other's COPY on its numbers in the unique index.
        expected = ['COPY "insurance_citizen"', 'UPDATE "insurance_importjob" SET "created" =']
        wait_until(lambda: waiting() == expected, timeout=30, what="both chunks to wait")
        assert sorted(claimed_by(job, first) + claimed_by(job, second)) == [0, 1]
        holder.commit()

    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, timeout=60, what="the import to finish")
    job.refresh_from_db()
    assert_imported_once(job, 95, 5, [])
    for i, number in enumerate(shared):
        (citizen,) = [c for c in Citizen.objects.filter(name__in=[f"甲{10 + i}", f"改{i}"]) if c.id_number == number]
        assert citizen is not None


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


@pytest.fixture
def broker_unreachable():
    """The Celery app publishes to a loopback port nobody listens on (a Redis restart), then to the
    test broker again. Its pools are dropped, not closed: kombu keeps one pool per broker address
    for the whole process, and a closed one would fail every later publish to the test broker."""
    from portal.celery import app

    def fresh_pools() -> None:
        app._pool = None
        app.amqp._producer_pool = None

    original = app.conf.broker_write_url  # what publishing connects to
    app.conf.broker_write_url = f"redis://127.0.0.1:{free_port()}/0"
    fresh_pools()
    try:
        yield
    finally:
        app.conf.broker_write_url = original
        fresh_pools()


@pytest.mark.django_db(transaction=True)
def test_an_upload_while_the_broker_is_unreachable_keeps_the_job_for_the_periodic_requeue(
    make_user, client, media, tmp_path, broker_unreachable, caplog
):
    """Not a 503 asking the clerk to upload again: the job is saved, and requeue_stale_jobs queues it."""
    sign_in_en(client, make_user(Role.CLERK))
    path = write_csv(tmp_path / "people.csv", good_and_bad_rows(3)[0])
    with caplog.at_level(logging.WARNING):
        response = upload(client, path)
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/citizens/imports/{job.pk}/"
    assert job.state == ImportJobState.QUEUED
    assert [r.getMessage() for r in caplog.records if r.name == "insurance.imports.jobs"] == [
        f"could not queue import job {job.pk} (OperationalError): the periodic requeue will"
    ]
