"""Periodic tasks of the insurance app."""

from celery import shared_task


@shared_task(soft_time_limit=250, time_limit=290)
def expire_certificates() -> int:
    from insurance.services import certificates_expire_due

    return certificates_expire_due()


# A 1,000,000-row file takes minutes: the limits are generous, and at the soft one the
# job is handed back (from its checkpoint) rather than lost. `acks_late` with
# `reject_on_worker_lost`: a worker that dies mid-file leaves the task to be redelivered,
# and the stale-heartbeat sweep below re-queues it in any case.
@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 120)
def run_import(job_id: int) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from insurance.imports.jobs import release_job, run_import_job

    try:
        run_import_job(job_id)
    except SoftTimeLimitExceeded:
        release_job(job_id)
        run_import.delay(job_id)


@shared_task(soft_time_limit=50, time_limit=60)
def requeue_stale_imports() -> int:
    from insurance.imports.jobs import requeue_stale_jobs

    return requeue_stale_jobs()
