"""Periodic tasks of the insurance app."""

from celery import shared_task


@shared_task(soft_time_limit=250, time_limit=290)
def expire_certificates() -> int:
    from insurance.services import certificates_expire_due

    return certificates_expire_due()


# An import's first task cuts its file into chunks, then claims chunks as `import_chunks` does;
# every chunk cut queues one `import_chunks`, which any import worker runs (both are routed to
# the `imports` queue: CELERY_TASK_ROUTES). A 1,000,000-row file takes minutes: the limits are
# generous, and at the soft one the work is handed back (from the split's checkpoint, or the
# chunk) rather than lost. `acks_late` with `reject_on_worker_lost`: a worker that dies leaves
# its task to be redelivered, and the stale-heartbeat sweep below re-queues the job in any case.
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 120)
def run_import(self, job_id: int) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from insurance.imports import jobs

    try:
        jobs.split_import(job_id)
        jobs.import_chunks(job_id, worker=jobs.worker_name(self.request.hostname))
    except SoftTimeLimitExceeded:
        jobs.release_job(job_id)
        run_import.delay(job_id)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 120)
def import_chunks(self, job_id: int) -> int:
    from celery.exceptions import SoftTimeLimitExceeded

    from insurance.imports import jobs

    try:
        return jobs.import_chunks(job_id, worker=jobs.worker_name(self.request.hostname))
    except SoftTimeLimitExceeded:
        import_chunks.delay(job_id)
        return 0


@shared_task(soft_time_limit=50, time_limit=60)
def requeue_stale_imports() -> int:
    from insurance.imports.jobs import requeue_stale_jobs

    return requeue_stale_jobs()
