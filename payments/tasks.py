"""Celery tasks for partner deliveries: thin, they take ids and call payments.delivery."""

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=30, time_limit=45)
def deliver_event(event_id: int) -> None:
    """One event. Nothing queues it any more (commits and replays queue `deliver_due_events`); kept
    so that messages queued by an earlier version are still understood."""
    from payments.delivery import services as delivery

    delivery.deliver_one(event_id)


@shared_task(soft_time_limit=50, time_limit=60)
def deliver_due_events() -> int:
    from payments.delivery import services as delivery

    delivery.sweep_started()
    return delivery.deliver_due()


@shared_task(soft_time_limit=110, time_limit=120)
def expire_undecided_bindings() -> int:
    """Pending family bindings undecided for 30 days become `rejected` (`timeout`)."""
    from payments.bindings.services import family_bindings_expire_undecided

    return family_bindings_expire_undecided()


@shared_task(soft_time_limit=110, time_limit=120)
def purge_idempotency_records() -> int:
    """Idempotency keys are kept 24 hours (PARTNER_API.md "Idempotency"), then deleted."""
    from payments.api.idempotency import idempotency_records_purge

    return idempotency_records_purge()


@shared_task(soft_time_limit=50, time_limit=60)
def expire_due_settlements() -> int:
    """Pending settlements unconfirmed 15 minutes after creation become `expired`, their reservation released."""
    from payments.settlements.services import settlements_expire_due

    return settlements_expire_due()


@shared_task(soft_time_limit=110, time_limit=120)
def scan_risk_rules() -> int:
    """Run the risk rules over today and yesterday (Asia/Shanghai); idempotent, returns new flags."""
    from payments.risk.services import risk_scan_recent

    return risk_scan_recent()
