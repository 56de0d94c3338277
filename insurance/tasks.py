"""Periodic tasks of the insurance app."""

from celery import shared_task


@shared_task(soft_time_limit=250, time_limit=290)
def expire_certificates() -> int:
    from insurance.services import certificates_expire_due

    return certificates_expire_due()
