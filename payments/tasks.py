"""Celery tasks for partner deliveries: thin, they take ids and call payments.delivery."""

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=30, time_limit=45)
def deliver_event(event_id: int) -> None:
    from payments import delivery

    delivery.deliver_one(event_id)


@shared_task(soft_time_limit=50, time_limit=60)
def deliver_due_events() -> int:
    from payments import delivery

    return delivery.deliver_due()
