"""Background import jobs (the portal's import screen and its Celery tasks):
an uploaded file is imported batch by batch from its checkpoint, each batch
committing its rows, row errors, counts and heartbeat together."""

import datetime as dt
import io
import logging
from collections.abc import Iterator
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from insurance.imports.files import open_upload, store_upload, upload_format
from insurance.imports.reading import ImportFileError, Row, check_xlsx, inspect_csv, read_stream
from insurance.imports.validation import RowError
from insurance.imports.writing import ImportSummary, import_rows
from insurance.models import ImportJob, ImportJobState, ImportRowError
from portal.actors import Actor
from portal.audit import audit_record
from portal.crypto import FileTampered
from portal.models import Region

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # runs that died before a job is failed rather than re-queued


class _LostJob(Exception):
    """Another run took the job over (this one was presumed dead): stop without committing."""


def import_job_create(*, actor: Actor, user, region: Region, upload, language: str = "") -> ImportJob:
    """Store the uploaded file and queue its import once the job is committed.

    `language` is the uploader's screen language: the row errors of the report
    are written in it, whichever language the worker runs in."""
    suffix = Path(upload.name).suffix.lower()
    with transaction.atomic():
        job = ImportJob(
            uploaded_by=user,
            region=region,
            original_name=Path(upload.name).name[:255],
            file_size=upload.size,
            language=language[:16],
        )
        store_upload(job, upload, suffix.lstrip("."))
        job.save()
        # The file's name may carry personal data: the audit has its size and format only.
        audit_record(
            actor=actor,
            action="citizen_import.upload",
            object_type="citizen_import",
            object_id=job.pk,
            region_code=region.code,
            after={"format": suffix.lstrip("."), "size": upload.size},
        )
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from insurance.tasks import run_import

    run_import.delay(job_id)


def _stale_after() -> dt.timedelta:
    return dt.timedelta(seconds=getattr(settings, "ECARD_IMPORT_STALE_SECONDS", 120))


def run_import_job(job_id: int, *, batch_size: int | None = None, max_batches: int | None = None) -> ImportJob | None:
    """Import a job's file from its checkpoint to the end (or for `max_batches`
    batches, leaving the job running for the next run to go on from there).

    Each batch commits its rows, error rows, counts, checkpoint and heartbeat
    together. A run claims the job by raising `attempts` (a fencing token):
    if the job is taken over by another run (after this one's heartbeat went
    stale), this one's next batch rolls back and it stops. Row errors are
    written in the uploader's language.
    """
    language = ImportJob.objects.filter(pk=job_id).values_list("language", flat=True).first()
    with translation.override(language or settings.LANGUAGE_CODE):
        return _run_import_job(job_id, batch_size=batch_size, max_batches=max_batches)


def _run_import_job(job_id: int, *, batch_size: int | None, max_batches: int | None) -> ImportJob | None:
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().select_related("uploaded_by").filter(pk=job_id).first()
        now = timezone.now()
        if job is None or job.is_finished:
            return job
        if job.state == ImportJobState.RUNNING and job.heartbeat_at and job.heartbeat_at > now - _stale_after():
            return job  # a live run has it (a duplicate delivery of the task)
        if job.attempts >= MAX_ATTEMPTS:
            # A task redelivered after its worker died (acks_late, reject_on_worker_lost), perhaps
            # killed by this very file: not run again.
            _give_up(job, now)
            gave_up = True
        else:
            gave_up = False
            job.state = ImportJobState.RUNNING
            job.attempts += 1
            job.started_at = job.started_at or now
            job.heartbeat_at = now
            job.save(update_fields=["state", "attempts", "started_at", "heartbeat_at"])
    if gave_up:
        _discard_upload(job)
        return job
    token = job.attempts
    fmt = upload_format(job)

    def on_batch(last_row: int, delta: ImportSummary, errors: list[RowError]) -> None:
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.attempts != token or locked.state != ImportJobState.RUNNING:
            raise _LostJob
        ImportRowError.objects.bulk_create(
            [
                ImportRowError(
                    job_id=job.pk, row=e.row, column=e.column[:64], message=str(e.message)[:500], value=e.value[:64]
                )
                for e in errors
            ]
        )
        locked.created += delta.created
        locked.updated += delta.updated
        locked.failed += delta.failed
        locked.rows_done = locked.created + locked.updated + locked.failed
        locked.checkpoint_row = last_row
        locked.heartbeat_at = timezone.now()
        locked.save(update_fields=["created", "updated", "failed", "rows_done", "checkpoint_row", "heartbeat_at"])

    checkpoint = job.checkpoint_row
    size = batch_size or settings.ECARD_IMPORT_BATCH_ROWS
    limit = None if max_batches is None else max_batches * size
    paused = False

    def rows_after_checkpoint(binary) -> Iterator[Row]:
        nonlocal paused
        taken = 0
        for row in read_stream(binary, fmt):
            if row[0] <= checkpoint:
                continue
            if limit is not None and taken >= limit:
                paused = True
                return
            taken += 1
            yield row

    error = ""
    try:
        if job.rows_total is None:
            # A first pass before any row is written: a file that is altered (every chunk is
            # authenticated) or, for a CSV, not UTF-8 fails with nothing imported.
            with open_upload(job) as binary:
                total = inspect_csv(binary) if fmt == "csv" else check_xlsx(_seekable(binary, fmt))
            ImportJob.objects.filter(pk=job.pk, attempts=token).update(rows_total=total, heartbeat_at=timezone.now())
        with open_upload(job) as binary:
            import_rows(
                rows_after_checkpoint(_seekable(binary, fmt)),
                actor=Actor.for_user(job.uploaded_by),
                region_codes={job.region_id},
                on_batch=on_batch,
                batch_size=size,
                context={"job": job.pk},
            )
    except _LostJob:
        return ImportJob.objects.get(pk=job.pk)
    except ImportFileError as exc:
        error = str(exc)
    except FileTampered:
        error = _("The stored file was altered or damaged; upload the file again.")
    except UnicodeDecodeError as exc:
        error = _("The file is not UTF-8 (stopped near byte %(byte)s; the rows before were imported).") % {
            "byte": exc.start
        }
    except (OperationalError, InterfaceError, SoftTimeLimitExceeded):
        raise  # the database went away, or the task's time is up: the job goes on from its checkpoint
    except Exception:
        # A fault no row error covers: the job fails now with what it committed, rather than
        # staying "running" to be re-queued into the same fault until its attempts are spent.
        logger.exception("import job %s failed", job.pk)
        error = _(
            "The import stopped on an unexpected error; the rows counted so far were imported. "
            "The portal's log has the details."
        )
    if paused:
        return ImportJob.objects.get(pk=job.pk)
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if job.attempts != token:
            return job
        job.state = ImportJobState.FAILED if error else ImportJobState.DONE
        job.error = error[:500]
        if not error:
            job.rows_total = job.rows_done  # the estimate becomes the exact count
        job.finished_at = job.heartbeat_at = timezone.now()
        job.save(update_fields=["state", "error", "rows_total", "finished_at", "heartbeat_at"])
    _discard_upload(job)
    return job


def _seekable(binary, fmt: str):
    """A CSV is read as a stream; openpyxl reads a zip from its end, so an XLSX file is
    decrypted into memory (the upload cap bounds it)."""
    if fmt == "xlsx":
        return io.BytesIO(binary.read())
    return binary


def _discard_upload(job: ImportJob) -> None:
    """The uploaded file holds identity numbers, names and phones (encrypted): it is deleted as soon
    as its job has ended, done or failed (the job keeps its name, size, counts and row errors)."""
    if job.file.name:
        job.file.storage.delete(job.file.name)


def _give_up(job: ImportJob, now: dt.datetime) -> None:
    job.state = ImportJobState.FAILED
    job.error = _("The import stopped %(n)s times without finishing; upload the file again.") % {"n": job.attempts}
    job.finished_at = now
    job.save(update_fields=["state", "error", "finished_at"])


def release_job(job_id: int) -> None:
    """Let the next run take the job at once (this run is stopping, e.g. at its time limit)."""
    ImportJob.objects.filter(pk=job_id, state=ImportJobState.RUNNING).update(heartbeat_at=None)


def requeue_stale_jobs() -> int:
    """Re-queue jobs whose run died (stale heartbeat) or whose task was lost (queued too long).
    A job that has died MAX_ATTEMPTS times is failed rather than retried for ever."""
    now = timezone.now()
    stale = now - _stale_after()
    requeued = 0
    failed: list[ImportJob] = []
    with transaction.atomic():
        silent = Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale)
        jobs = ImportJob.objects.select_for_update(skip_locked=True).filter(
            (Q(state=ImportJobState.RUNNING) & silent) | Q(state=ImportJobState.QUEUED, created_at__lt=stale),
            Q(requeued_at__isnull=True) | Q(requeued_at__lt=stale),
        )
        for job in jobs:
            if job.attempts >= MAX_ATTEMPTS:
                _give_up(job, now)
                failed.append(job)
                continue
            job.requeued_at = now
            job.save(update_fields=["requeued_at"])
            transaction.on_commit(lambda pk=job.pk: _enqueue(pk))
            requeued += 1
    for job in failed:
        _discard_upload(job)
    return requeued
