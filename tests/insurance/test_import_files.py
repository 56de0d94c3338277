"""An uploaded import file holds identity numbers, names and phones: it is never on disk in clear
(kept in memory by the upload screen, stored encrypted), readable by the portal's user only while
its job runs, and deleted when the job ends, done or failed."""

import datetime as dt
import os
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from insurance.imports.jobs import MAX_ATTEMPTS, import_job_create, requeue_stale_jobs, run_import_job
from insurance.models import Citizen, ImportJob, ImportJobState
from portal.actors import Actor
from portal.crypto import FILE_CHUNK_BYTES
from portal.models import Role
from testkit.citizens import new_id_number
from testkit.imports import write_csv, write_xlsx
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db


def new_job(make_user, content: bytes, name: str = "people.csv") -> ImportJob:
    clerk = make_user(Role.CLERK)
    return import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile(name, content),
        language="en",
    )


def good_csv() -> bytes:
    return f"id_number,name,phone,region_code,scheme\n{new_id_number('310000')},张三,13800000000,310000,resident\n".encode()


def test_the_stored_upload_is_readable_by_the_portals_user_only(make_user, media):
    job = new_job(make_user, good_csv())
    path = Path(job.file.path)
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_a_finished_job_leaves_no_file(make_user, media):
    job = new_job(make_user, good_csv())
    path = Path(job.file.path)
    job = run_import_job(job.pk)
    assert job.state == ImportJobState.DONE and job.created == 1
    assert not path.exists()


def test_a_failed_job_leaves_no_file(make_user, media):
    job = new_job(make_user, b"id_number,name\n1,2\n")
    path = Path(job.file.path)
    assert run_import_job(job.pk).state == ImportJobState.FAILED
    assert not path.exists()


def test_a_job_given_up_after_its_attempts_leaves_no_file(make_user, media):
    job = new_job(make_user, good_csv())
    path = Path(job.file.path)
    stale = job.created_at - dt.timedelta(hours=1)
    ImportJob.objects.filter(pk=job.pk).update(
        state=ImportJobState.RUNNING, attempts=MAX_ATTEMPTS, heartbeat_at=stale, created_at=stale
    )
    requeue_stale_jobs()
    assert ImportJob.objects.get(pk=job.pk).state == ImportJobState.FAILED
    assert not path.exists()
    assert os.listdir(path.parent) == []


def sign_in_en(client, user) -> None:
    sign_in(client, user)
    client.cookies["django_language"] = "en"


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_an_uploaded_file_is_stored_encrypted_and_its_job_still_imports_it(make_user, client, media, kind):
    clerk = make_user(Role.CLERK)
    sign_in_en(client, clerk)
    number, name, phone = new_id_number("310000"), "欧阳明月", "13912345678"
    write = write_csv if kind == "csv" else write_xlsx
    path = write(media / f"people.{kind}", [[number, name, phone, "310000", "resident", "1200"]])
    with path.open("rb") as handle:
        response = client.post("/citizens/imports/new/", {"region": "310000", "file": handle})
    assert response.status_code == 302
    job = ImportJob.objects.get()
    stored = Path(job.file.path).read_bytes()
    for secret in (number, name, phone):
        assert secret.encode() not in stored and secret.encode("utf-16-le") not in stored
    assert b"id_number" not in stored and not stored.startswith(b"PK")  # not the file, nor a zip of it

    job = run_import_job(job.pk)
    assert (job.state, job.created, job.failed) == (ImportJobState.DONE, 1, 0), job.error
    citizen = Citizen.objects.get()
    assert (citizen.id_number, citizen.name, citizen.phone) == (number, name, phone)


def test_the_upload_screen_never_writes_the_file_to_a_temporary_file(make_user, client, media, settings):
    # Django writes an upload over FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file in clear:
    # with a temporary folder that does not exist, that would fail the request.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    settings.FILE_UPLOAD_TEMP_DIR = str(media / "no-such-folder")
    sign_in_en(client, make_user(Role.CLERK))
    upload = SimpleUploadedFile("people.csv", good_csv())
    response = client.post("/citizens/imports/new/", {"region": "310000", "file": upload})
    assert response.status_code == 302 and ImportJob.objects.count() == 1
    assert not (media / "no-such-folder").exists()


def chunks_of(data: bytes, header: int = 21) -> tuple[bytes, list[bytes]]:
    size = FILE_CHUNK_BYTES + 16
    body = data[header:]
    return data[:header], [body[i : i + size] for i in range(0, len(body), size)]


def drop_last_chunk(data: bytes) -> bytes:
    header, chunks = chunks_of(data)
    return header + b"".join(chunks[:-1])


def swap_first_chunks(data: bytes) -> bytes:
    header, chunks = chunks_of(data)
    return header + chunks[1] + chunks[0] + b"".join(chunks[2:])


def flip_a_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]


@pytest.mark.parametrize("tamper", [flip_a_byte, drop_last_chunk, swap_first_chunks])
def test_a_stored_file_altered_fails_its_job_with_a_clear_error_and_imports_nothing(make_user, media, tamper):
    rows = "".join(f"{new_id_number('310000')},人{i},13800000000,310000,resident\n" for i in range(4000))
    job = new_job(make_user, ("id_number,name,phone,region_code,scheme\n" + rows).encode())
    path = Path(job.file.path)
    data = path.read_bytes()
    assert len(data) > 3 * FILE_CHUNK_BYTES  # several chunks, so that dropping and swapping them means something
    path.write_bytes(tamper(data))

    job = run_import_job(job.pk)
    assert job.state == ImportJobState.FAILED and job.rows_done == 0
    assert job.error == "The stored file was altered or damaged; upload the file again."
    assert not Citizen.objects.exists() and not path.exists()


def test_the_upload_screen_still_checks_the_csrf_token(make_user, media):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    sign_in_en(client, make_user(Role.CLERK))
    upload = SimpleUploadedFile("people.csv", good_csv())
    assert client.post("/citizens/imports/new/", {"region": "310000", "file": upload}).status_code == 403
    assert not ImportJob.objects.exists()


def test_a_job_whose_file_is_gone_fails_instead_of_staying_running(make_user, media):
    job = new_job(make_user, good_csv())
    Path(job.file.path).unlink()  # say, removed by hand while the job was queued
    job = run_import_job(job.pk)
    assert job.state == ImportJobState.FAILED and job.finished_at is not None
    assert job.error.startswith("The import stopped on an unexpected error")
