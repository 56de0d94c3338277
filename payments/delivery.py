"""Delivery of outbox events to partners' webhooks (to be written)."""


def deliver_one(event_id: int) -> None:
    raise NotImplementedError


def deliver_due() -> int:
    raise NotImplementedError
