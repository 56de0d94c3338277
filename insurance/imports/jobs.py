"""Background import jobs (the portal's import screen and its Celery tasks), in parallel.

The job's first task (`run_import`) reads the uploaded file once, as a stream, and cuts it
into chunks of ECARD_IMPORT_CHUNK_ROWS rows (`ImportChunk`, compressed and encrypted), each
committed with the job's split checkpoint (`split_row`), so that a split that dies is resumed
from there. Every committed chunk queues a claim task (`import_chunks`) that any import worker
runs: it claims the next chunk with `FOR UPDATE SKIP LOCKED` and commits the chunk's citizens,
error rows, its state and the job's counts (`F()` updates) in one transaction. A chunk whose
worker died (stale heartbeat) is claimed again; the chunk that commits last ends the job.
docs/adr/0003-parallel-imports.md has the reasons."""

import datetime as dt
import io
import json
import logging
import os
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from cryptography.exceptions import InvalidTag
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from insurance.imports.files import open_upload, store_upload, upload_format
from insurance.imports.reading import ImportFileError, Row, RowProblem, check_xlsx, inspect_csv, read_stream
from insurance.imports.validation import RowError
from insurance.imports.writing import ImportSummary, import_rows, is_concurrency_conflict
from insurance.models import ImportChunk, ImportChunkState, ImportJob, ImportJobState, ImportRowError
from portal import unavailable
from portal.actors import Actor
from portal.audit import audit_record
from portal.crypto import FileTampered, decrypt_bytes, encrypt_bytes
from portal.models import Region
from portal.observability import metrics

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # runs that died before a job (its split, or one of its chunks) is failed rather than re-queued
CHUNK_CONFLICT_RETRIES = 3  # a chunk's transaction run again after a deadlock with a concurrent chunk


class _LostJob(Exception):
    """Another run took the job or the chunk over (this one was presumed dead), or the job
    ended: stop without committing."""


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
        transaction.on_commit(lambda: _enqueue_upload(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from insurance.tasks import run_import

    run_import.delay(job_id)


def _enqueue_upload(job_id: int) -> None:
    """Queue a new upload's import once it is committed. The job is saved whatever happens: with the
    broker unreachable (a Redis restart), `requeue_stale_jobs` queues it once it has waited
    ECARD_IMPORT_STALE_SECONDS, and the clerk is shown the job, not told to upload the file again."""
    try:
        _enqueue(job_id)
    except Exception as exc:
        backend = unavailable.unreachable_backend(exc)
        if backend is None:
            raise
        metrics.count_error(backend)
        logger.warning("could not queue import job %s (%s): the periodic requeue will", job_id, type(exc).__name__)


def _enqueue_claim(job_id: int) -> None:
    from insurance.tasks import import_chunks

    import_chunks.delay(job_id)


def _stale_after() -> dt.timedelta:
    return dt.timedelta(seconds=getattr(settings, "ECARD_IMPORT_STALE_SECONDS", 120))


def worker_name(hostname: str | None = None) -> str:
    """Who claims a chunk: the Celery worker's name (or this host) and the process."""
    return f"{hostname or socket.gethostname()} pid {os.getpid()}"[:200]


def run_import_job(
    job_id: int, *, chunk_rows: int | None = None, max_chunks: int | None = None, worker: str = ""
) -> ImportJob | None:
    """Cut a job's file into chunks (from its split checkpoint) and import every chunk this
    process can claim: the whole job when no other worker takes part. `max_chunks` stops the
    split after that many chunks, as if its worker had died there. Row errors are written in
    the uploader's language."""
    split_import(job_id, chunk_rows=chunk_rows, max_chunks=max_chunks)
    import_chunks(job_id, worker=worker)
    return ImportJob.objects.filter(pk=job_id).first()


def _in_language(job_id: int):
    language = ImportJob.objects.filter(pk=job_id).values_list("language", flat=True).first()
    return translation.override(language or settings.LANGUAGE_CODE)


def split_import(job_id: int, *, chunk_rows: int | None = None, max_chunks: int | None = None) -> None:
    """The split: claim the job (its `attempts` are the split's fencing token) and cut its file
    into chunks, each committed with the checkpoint; nothing if the split is complete or a live
    run has it. A file that cannot be read fails the job."""
    with _in_language(job_id):
        _split_import(job_id, chunk_rows=chunk_rows, max_chunks=max_chunks)


def _split_import(job_id: int, *, chunk_rows: int | None, max_chunks: int | None) -> None:
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        now = timezone.now()
        if job is None or job.is_finished or job.chunks_total is not None:
            return
        if job.state == ImportJobState.RUNNING and job.heartbeat_at and job.heartbeat_at > now - _stale_after():
            return  # a live run has it (a duplicate delivery of the task)
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
        _discard_personal_data(job)
        return
    token = job.attempts
    fmt = upload_format(job)
    size = chunk_rows or settings.ECARD_IMPORT_CHUNK_ROWS
    error = ""
    try:
        if job.rows_total is None:
            # A first pass before any row is written: a file that is altered (every chunk is
            # authenticated) or, for a CSV, not UTF-8 fails with nothing imported.
            with open_upload(job) as binary:
                total = inspect_csv(binary) if fmt == "csv" else check_xlsx(_seekable(binary, fmt))
            ImportJob.objects.filter(pk=job.pk, attempts=token).update(rows_total=total, heartbeat_at=timezone.now())
        index = ImportChunk.objects.filter(job_id=job.pk).count()
        with open_upload(job) as binary:
            rows = (row for row in read_stream(_seekable(binary, fmt), fmt) if row[0] > job.split_row)
            for cut, batch in enumerate(_batches(rows, size)):
                if max_chunks is not None and cut >= max_chunks:
                    return
                payload = _seal_chunk(job.pk, index, batch)
                with transaction.atomic():
                    _hold_split(job.pk, token, split_row=batch[-1][0])
                    ImportChunk.objects.create(
                        job_id=job.pk,
                        index=index,
                        first_row=batch[0][0],
                        last_row=batch[-1][0],
                        rows=len(batch),
                        payload=payload,
                    )
                    transaction.on_commit(lambda: _enqueue_claim(job.pk))
                index += 1
        with transaction.atomic():
            _hold_split(job.pk, token, chunks_total=index)
            finished = _finish_if_complete(job.pk)
        if finished:
            _discard_personal_data(job)
        return
    except _LostJob:
        return
    except ImportFileError as exc:
        error = str(exc)
    except FileTampered:
        error = _("The stored file was altered or damaged; upload the file again.")
    except UnicodeDecodeError as exc:
        error = _("The file is not UTF-8 (stopped near byte %(byte)s; the rows before were imported).") % {
            "byte": exc.start
        }
    except (OperationalError, InterfaceError, SoftTimeLimitExceeded):
        raise  # the database went away, or the task's time is up: the split goes on from its checkpoint
    except Exception:
        # A fault no row error covers: the job fails now with what it committed, rather than
        # staying "running" to be re-queued into the same fault until its attempts are spent.
        logger.exception("import job %s failed", job.pk)
        error = _unexpected()
    _fail(job.pk, error, token=token)


def _hold_split(job_id: int, token: int, **fields: Any) -> None:
    """Write the split's checkpoint (and heartbeat) if this run still holds the job."""
    held = ImportJob.objects.filter(pk=job_id, attempts=token, state=ImportJobState.RUNNING).update(
        heartbeat_at=timezone.now(), **fields
    )
    if not held:
        raise _LostJob


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- A chunk's rows at rest: compressed, then AES-GCM under the field key, bound to the job
# and the chunk's index (a payload moved to another chunk does not decrypt). -----------------


def _chunk_ad(job_id: int, index: int) -> bytes:
    return f"citizen_import.chunk|{job_id}|{index}".encode()


def _seal_chunk(job_id: int, index: int, rows: list[Row]) -> bytes:
    # A row is [number, {column: value}] or [number, None, why it could not be read]; an XLSX
    # cell may be a date (written as the text the validation would make of it).
    plain = json.dumps(
        [[n, None, raw.message] if isinstance(raw, RowProblem) else [n, raw] for n, raw in rows],
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    ).encode()
    return encrypt_bytes(
        zlib.compress(plain, 1), keys=settings.ECARD_FIELD_ENCRYPTION_KEYS, associated_data=_chunk_ad(job_id, index)
    )


def _open_chunk(chunk: ImportChunk) -> list[Row]:
    try:
        plain = decrypt_bytes(
            chunk.payload,
            keys=settings.ECARD_FIELD_ENCRYPTION_KEYS,
            associated_data=_chunk_ad(chunk.job_id, chunk.index),
        )
    except (InvalidTag, KeyError, IndexError):
        raise FileTampered(f"chunk {chunk.index} does not decrypt") from None
    return [
        (item[0], RowProblem(item[2]) if item[1] is None else item[1]) for item in json.loads(zlib.decompress(plain))
    ]


# --- Claiming and importing chunks ----------------------------------------------------


def import_chunks(job_id: int, *, worker: str = "") -> int:
    """Claim and import the job's chunks one after another until none is left to claim (the
    body of the claim task, which any number of import workers run at once); how many this
    run imported."""
    with _in_language(job_id):
        return import_chunks_of(job_id, worker=worker)


def import_chunks_of(job_id: int, *, worker: str = "") -> int:
    job = ImportJob.objects.select_related("uploaded_by").filter(pk=job_id).first()
    if job is None:
        return 0
    worker = worker or worker_name()
    actor = Actor.for_user(job.uploaded_by)
    done = 0
    while (chunk := claim_chunk(job_id, worker=worker)) is not None:
        try:
            for retry in range(CHUNK_CONFLICT_RETRIES + 1):
                try:
                    _import_chunk(job, chunk, actor)
                    break
                except OperationalError as exc:
                    # Deadlocked with a concurrent chunk writing the same numbers: the other one
                    # commits, and this one, run again, finds them registered.
                    if not is_concurrency_conflict(exc) or retry == CHUNK_CONFLICT_RETRIES:
                        raise
            done += 1
        except _LostJob:
            continue
        except FileTampered:
            _fail(job_id, _("The stored file was altered or damaged; upload the file again."))
        except (OperationalError, InterfaceError):
            raise  # the database went away: the chunk is claimed again once its heartbeat is stale
        except SoftTimeLimitExceeded:
            ImportChunk.objects.filter(pk=chunk.pk, attempts=chunk.attempts).update(heartbeat_at=None)
            raise
        except Exception:
            logger.exception("import job %s failed in chunk %s", job_id, chunk.index)
            _fail(job_id, _unexpected())
    return done


def claim_chunk(job_id: int, *, worker: str) -> ImportChunk | None:
    """The job's next chunk to import, claimed (`attempts` raised: the fencing token): a
    pending one, or a running one whose worker fell silent. None if there is none, or the
    job has ended; a chunk that died MAX_ATTEMPTS times fails the job."""
    now = timezone.now()
    with transaction.atomic():
        if not ImportJob.objects.filter(pk=job_id, state=ImportJobState.RUNNING).exists():
            return None
        silent = Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - _stale_after())
        chunk = (
            ImportChunk.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(Q(state=ImportChunkState.PENDING) | (Q(state=ImportChunkState.RUNNING) & silent), job_id=job_id)
            .order_by("index")
            .first()
        )
        if chunk is None:
            return None
        if chunk.attempts >= MAX_ATTEMPTS:
            exhausted = chunk.attempts
        else:
            chunk.state = ImportChunkState.RUNNING
            chunk.attempts += 1
            chunk.claimed_by = worker
            chunk.heartbeat_at = now
            chunk.save(update_fields=["state", "attempts", "claimed_by", "heartbeat_at"])
            return chunk
    with _in_language(job_id):
        _fail(job_id, _("The import stopped %(n)s times without finishing; upload the file again.") % {"n": exhausted})
    return None


def _import_chunk(job: ImportJob, chunk: ImportChunk, actor: Actor) -> None:
    """Import a claimed chunk: its citizens, error rows, its state and the job's counts in one
    transaction, which rolls back if the chunk was claimed again meanwhile or the job ended."""
    rows = _open_chunk(chunk)
    token = chunk.attempts
    finished = False

    def on_begin() -> None:
        # The chunk's row stays locked until the chunk commits: while its rows are written (or
        # wait on a concurrent chunk's), no claim can take it over, however long that lasts.
        held = ImportChunk.objects.select_for_update(of=("self",)).filter(
            pk=chunk.pk, attempts=token, state=ImportChunkState.RUNNING
        )
        if not list(held.values_list("pk", flat=True)):
            raise _LostJob

    def on_batch(last_row: int, delta: ImportSummary, errors: list[RowError]) -> None:
        now = timezone.now()
        ImportChunk.objects.filter(pk=chunk.pk).update(state=ImportChunkState.DONE, payload=b"", heartbeat_at=now)
        ImportRowError.objects.bulk_create(
            [
                ImportRowError(
                    job_id=job.pk, row=e.row, column=e.column[:64], message=str(e.message)[:500], value=e.value[:64]
                )
                for e in errors
            ]
        )
        running = ImportJob.objects.filter(pk=job.pk, state=ImportJobState.RUNNING).update(
            created=F("created") + delta.created,
            updated=F("updated") + delta.updated,
            failed=F("failed") + delta.failed,
            rows_done=F("rows_done") + delta.rows_done,
            heartbeat_at=now,
        )
        if not running:
            raise _LostJob
        nonlocal finished
        finished = _finish_if_complete(job.pk)

    import_rows(
        rows,
        actor=actor,
        region_codes={job.region_id},
        on_begin=on_begin,
        on_batch=on_batch,
        batch_size=len(rows),
        context={"job": job.pk},
    )
    if finished:
        _discard_personal_data(job)


def _finish_if_complete(job_id: int) -> bool:
    """Inside the transaction that has just written the job's row (and so holds its lock until
    commit): the job is done if its split is complete and every chunk is done (True: the caller
    discards its personal data once committed). Concurrent last chunks queue on the job's row,
    and the one that comes second sees the first's commit."""
    job = ImportJob.objects.select_for_update().get(pk=job_id)
    if job.state != ImportJobState.RUNNING or job.chunks_total is None:
        return False
    if ImportChunk.objects.filter(job_id=job_id).exclude(state=ImportChunkState.DONE).exists():
        return False
    job.state = ImportJobState.DONE
    job.rows_total = job.rows_done  # the estimate becomes the exact count
    job.finished_at = job.heartbeat_at = timezone.now()
    job.save(update_fields=["state", "rows_total", "finished_at", "heartbeat_at"])
    return True


def _fail(job_id: int, error: str, *, token: int | None = None) -> None:
    """End a running job as failed with `error` (what it committed stays imported)."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.state != ImportJobState.RUNNING or (token is not None and job.attempts != token):
            return
        job.state = ImportJobState.FAILED
        job.error = error[:500]
        job.finished_at = job.heartbeat_at = timezone.now()
        job.save(update_fields=["state", "error", "finished_at", "heartbeat_at"])
    _discard_personal_data(job)


def _unexpected() -> str:
    return _(
        "The import stopped on an unexpected error; the rows counted so far were imported. "
        "The portal's log has the details."
    )


def _seekable(binary, fmt: str):
    """A CSV is read as a stream; openpyxl reads a zip from its end, so an XLSX file is
    decrypted into memory (the upload cap bounds it)."""
    if fmt == "xlsx":
        return io.BytesIO(binary.read())
    return binary


def _discard_personal_data(job: ImportJob) -> None:
    """The uploaded file and the chunks hold identity numbers, names and phones (encrypted): they
    are deleted as soon as the job has ended, done or failed (the job keeps its name, size, counts
    and row errors, and its chunks their row ranges and who imported them)."""
    ImportChunk.objects.filter(job_id=job.pk).exclude(payload=b"").update(payload=b"")
    if job.file.name:
        job.file.storage.delete(job.file.name)


def _give_up(job: ImportJob, now: dt.datetime) -> None:
    job.state = ImportJobState.FAILED
    job.error = _("The import stopped %(n)s times without finishing; upload the file again.") % {"n": job.attempts}
    job.finished_at = now
    job.save(update_fields=["state", "error", "finished_at"])


def release_job(job_id: int) -> None:
    """Let the next run take the job's split at once (this run is stopping, e.g. at its time limit)."""
    ImportJob.objects.filter(pk=job_id, state=ImportJobState.RUNNING, chunks_total__isnull=True).update(
        heartbeat_at=None
    )


def requeue_stale_jobs() -> int:
    """Re-queue jobs that fell silent (no chunk committed for ECARD_IMPORT_STALE_SECONDS: their
    split's worker died, or a chunk's, or their tasks were lost) or whose task was lost (queued
    too long): the split task if the split is not complete, else one claim task per chunk left.
    A split that has died MAX_ATTEMPTS times fails the job rather than be retried for ever."""
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
            if job.chunks_total is not None:
                left = job.chunks.exclude(state=ImportChunkState.DONE).count()
                for _n in range(left):
                    transaction.on_commit(lambda pk=job.pk: _enqueue_claim(pk))
            elif job.attempts >= MAX_ATTEMPTS:
                _give_up(job, now)
                failed.append(job)
                continue
            else:
                transaction.on_commit(lambda pk=job.pk: _enqueue(pk))
            job.requeued_at = now
            job.save(update_fields=["requeued_at"])
            requeued += 1
    for job in failed:
        _discard_personal_data(job)
    return requeued
