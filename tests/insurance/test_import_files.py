"""An uploaded import file holds identity numbers, names and phones in clear: it is readable by
the portal's user only while its job runs, and deleted when the job ends, done or failed."""

import datetime as dt
import os
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from insurance.imports.jobs import MAX_ATTEMPTS, import_job_create, requeue_stale_jobs, run_import_job
from insurance.models import ImportJob, ImportJobState
from portal.actors import Actor
from portal.models import Role
from testkit.citizens import new_id_number

pytestmark = pytest.mark.django_db


def new_job(make_user, content: bytes) -> ImportJob:
    clerk = make_user(Role.CLERK)
    return import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile("people.csv", content),
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
