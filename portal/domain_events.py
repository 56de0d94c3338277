"""Domain events: what other apps must hear about a change, in its transaction.

The app that makes a change records an event; subscribers (registered in
their AppConfig.ready) run synchronously in the same transaction, so that
`insurance` never imports `payments` and nothing is lost between them.
"""

from collections.abc import Callable

from django.db import connection

from portal.models import DomainEvent

Handler = Callable[[DomainEvent], None]
_handlers: list[tuple[str, Handler]] = []


def subscribe(type_prefix: str, handler: Handler) -> None:
    """Call `handler` for every event whose type starts with `type_prefix`."""
    if (type_prefix, handler) not in _handlers:
        _handlers.append((type_prefix, handler))


def record(*, type: str, aggregate_type: str, aggregate_id: str, region_code: str = "", data: dict) -> DomainEvent:
    if not connection.in_atomic_block:
        raise RuntimeError("domain events must be recorded inside the transaction of the change")
    event = DomainEvent.objects.create(
        type=type, aggregate_type=aggregate_type, aggregate_id=aggregate_id, region_code=region_code, data=data
    )
    for prefix, handler in _handlers:
        if event.type.startswith(prefix):
            handler(event)
    return event
