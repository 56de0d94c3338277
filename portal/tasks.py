from celery import shared_task

from portal.audit import audit_chain_pending


@shared_task(soft_time_limit=50, time_limit=60)
def chain_audit_events() -> int:
    """Beat, every few seconds: committed audit rows take their place in the chain."""
    return audit_chain_pending()
