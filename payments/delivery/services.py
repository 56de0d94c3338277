"""Delivery of outbox events to partners' webhooks (PARTNER_API.md "Webhooks").

A worker claims due pending events in one short transaction, leasing them by
pushing `next_attempt_at` to now + ECARD_DELIVERY_LEASE_SECONDS, and commits
before any HTTP call: a worker killed mid-delivery leaves its events to be
retaken once the lease runs out (delivery is at least once). The HTTP calls
of a batch run concurrently on a pooled keep-alive client; their outcomes are
written back in one transaction. Retry delays live in `next_attempt_at`,
never in broker ETAs.
"""

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import urllib3
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from prometheus_client import Counter
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from payments import keys, signing
from payments.delivery import addresses
from payments.delivery.errors import DeliveryErrorCode
from payments.models import DeliveryAttempt, OutboxEvent, OutboxState, Partner
from portal import fastcache
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError
from portal.observability import metrics, requestid

logger = logging.getLogger(__name__)

DELIVERIES = Counter(
    "ecard_webhook_deliveries_total",
    "Webhook delivery attempts by result: delivered, failed (to be retried) or dead (the last one failed).",
    ["result"],
)
for _result_label in ("delivered", "failed", "dead"):
    DELIVERIES.labels(_result_label)

# A sweep stops claiming new batches once it could not finish one within this budget
# (kept well below the task's soft time limit of 50 s).
SWEEP_BUDGET_SECONDS = float(getattr(settings, "ECARD_DELIVERY_SWEEP_BUDGET_SECONDS", 35))


@dataclass(frozen=True)
class Claimed:
    id: int
    public_id: str
    type: str
    body: str
    attempts: int
    url: str
    request_id: str = ""


@dataclass(frozen=True)
class Outcome:
    event: Claimed
    started_at: datetime
    status_code: int | None
    latency_ms: int
    error: str

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


# --- One pooled HTTP client and thread pool per process (created after fork) ---

_pool_lock = threading.Lock()
_pool_pid: int | None = None
_client: urllib3.PoolManager | None = None
_executor: ThreadPoolExecutor | None = None


def _http() -> tuple[urllib3.PoolManager, ThreadPoolExecutor]:
    """urllib3 rather than httpx here: less CPU per webhook (docs/benchmarks-outbox.md)."""
    global _pool_pid, _client, _executor
    pid = os.getpid()
    if _pool_pid != pid or _client is None or _executor is None:
        with _pool_lock:
            if _pool_pid != pid or _client is None or _executor is None:
                size = max(4, settings.ECARD_DELIVERY_BATCH_SIZE * 2)
                _client = urllib3.PoolManager(
                    num_pools=64,
                    maxsize=size,
                    block=False,
                    retries=False,
                    timeout=urllib3.Timeout(total=settings.ECARD_WEBHOOK_TIMEOUT_SECONDS),
                )
                if settings.ECARD_WEBHOOK_PUBLIC_ONLY:
                    _client = addresses.public_only(_client)
                _executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="webhook")
                _pool_pid = pid
    return _client, _executor


def retry_delay(attempts_made: int) -> timedelta | None:
    """Delay before the next attempt after `attempts_made` failed ones; None means the event is dead."""
    schedule = settings.ECARD_DELIVERY_RETRY_SCHEDULE
    if attempts_made > len(schedule):
        return None
    return timedelta(seconds=schedule[attempts_made - 1])


# --- Claim -------------------------------------------------------------------


_CLAIM_SQL = """
UPDATE {events} AS e SET next_attempt_at = %(lease_until)s
FROM (
    SELECT id FROM {events}
    WHERE state = 'pending' AND next_attempt_at <= %(now)s {only_one}
      AND partner_id IN (SELECT id FROM {partners} WHERE NOT deliveries_paused AND webhook_url <> '')
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS due
WHERE e.id = due.id
RETURNING e.id, e.public_id, e.type, e.body, e.attempts,
          (SELECT webhook_url FROM {partners} AS p WHERE p.id = e.partner_id), e.request_id
"""


def _relaxed_commit(cursor) -> None:
    # Losing these writes in a database crash only means an event is delivered
    # again (delivery is at least once), so they need not wait for the WAL flush.
    cursor.execute("SET LOCAL synchronous_commit = off")


def claim_due(*, limit: int, event_id: int | None = None) -> list[Claimed]:
    """Lease up to `limit` due pending events to this worker, oldest due first; committed on return.

    One statement: skip rows another worker holds, push `next_attempt_at` to the end of the lease.
    """
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.ECARD_DELIVERY_LEASE_SECONDS)
    sql = _CLAIM_SQL.format(
        events=OutboxEvent._meta.db_table,
        partners=Partner._meta.db_table,
        only_one="AND id = %(event_id)s" if event_id is not None else "",
    )
    with transaction.atomic(), connection.cursor() as cursor:
        _relaxed_commit(cursor)
        cursor.execute(sql, {"lease_until": lease_until, "now": now, "limit": limit, "event_id": event_id})
        rows = cursor.fetchall()
    rows.sort(key=lambda row: row[0])
    return [Claimed(*row) for row in rows]


# --- Send --------------------------------------------------------------------


def _send(client: urllib3.PoolManager, key: keys.SigningKey, event: Claimed) -> Outcome:
    body = event.body.encode("utf-8")
    started_at = timezone.now()
    signature = signing.webhook_headers(
        key_id=key.key_id, private_key=key.private_key, event_id=event.public_id, body=body, timestamp=int(time.time())
    )
    headers = {"Content-Type": "application/json", "Ecard-Event-Id": event.public_id, "Ecard-Event-Type": event.type}
    if event.request_id:  # outside the signature (PARTNER_API.md signs the event id and body only)
        headers[requestid.HEADER] = event.request_id
    headers.update(signature.as_dict())
    t0 = time.perf_counter()
    status: int | None = None
    error = ""
    try:
        response = client.request("POST", event.url, body=body, headers=headers, redirect=False)
        status = response.status
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    # Errors name the failure only: never the body, which could carry personal data.
    except (ConnectTimeoutError, NewConnectionError):
        error = "connection failed"
    except Urllib3Timeout:
        error = "timeout"
    except HTTPError as exc:
        error = f"HTTP error: {type(exc).__name__}"
    except Exception as exc:  # a malformed URL and the like: recorded, retried, never a crashed sweep
        error = f"error: {type(exc).__name__}"
    latency_ms = int((time.perf_counter() - t0) * 1000)
    return Outcome(event, started_at, status, latency_ms, error[:300])


def _deliver_batch(batch: list[Claimed]) -> list[Outcome]:
    key = keys.current_signing_key()
    client, executor = _http()
    if len(batch) == 1:
        outcomes = [_send(client, key, batch[0])]
    else:
        outcomes = list(executor.map(lambda event: _send(client, key, event), batch))
    _record(outcomes)
    for o in outcomes:  # counted once the outcomes are committed
        DELIVERIES.labels(_result(o)).inc()
    return outcomes


def _result(outcome: Outcome) -> str:
    if outcome.succeeded:
        return "delivered"
    return "dead" if retry_delay(outcome.event.attempts + 1) is None else "failed"


@transaction.atomic
def _record(outcomes: list[Outcome]) -> None:
    now = timezone.now()
    with connection.cursor() as cursor:
        _relaxed_commit(cursor)
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            event_id=o.event.id,
            number=o.event.attempts + 1,
            started_at=o.started_at,
            status_code=o.status_code,
            latency_ms=o.latency_ms,
            error=o.error,
            succeeded=o.succeeded,
        )
        for o in outcomes
    )
    by_status: dict[int | None, list[int]] = {}
    for o in outcomes:
        if o.succeeded:
            by_status.setdefault(o.status_code, []).append(o.event.id)
    for status, ids in by_status.items():
        OutboxEvent.objects.filter(pk__in=ids, state=OutboxState.PENDING).update(
            state=OutboxState.DELIVERED,
            delivered_at=now,
            last_attempt_at=now,
            last_status=status,
            last_error="",
            attempts=F("attempts") + 1,
            next_attempt_at=None,
        )
    for o in outcomes:
        if o.succeeded:
            continue
        made = o.event.attempts + 1
        delay = retry_delay(made)
        # Conditional on the attempt count we claimed: if the lease ran out and another
        # worker has already recorded a newer attempt, its outcome stands.
        OutboxEvent.objects.filter(pk=o.event.id, state=OutboxState.PENDING, attempts=o.event.attempts).update(
            attempts=made,
            last_attempt_at=now,
            last_status=o.status_code,
            last_error=o.error,
            state=OutboxState.DEAD if delay is None else OutboxState.PENDING,
            next_attempt_at=None if delay is None else now + delay,
        )
        if delay is None:
            logger.warning(
                "outbox event %s is dead after %s attempts",
                o.event.public_id,
                made,
                extra={"request_id": o.event.request_id},
            )


# --- Entry points of the tasks -------------------------------------------------


def deliver_one(event_id: int) -> bool:
    """Deliver this event now if it is due and not leased to another worker; True if attempted."""
    batch = claim_due(limit=1, event_id=event_id)
    if not batch:
        return False
    _deliver_batch(batch)
    return True


# A sweep that is queued and has not started yet will claim every event committed before it starts,
# so a commit that finds one queued need not queue another: under load, one Celery message per sweep
# instead of one per event (publishing one is a broker round trip in the web request). The mark is set by the kick
# that queues a sweep and cleared by the sweep as it starts; it expires in case its message is lost,
# and the beat sweep (ECARD_DELIVERY_SWEEP_SECONDS) delivers whatever a lost message would have.
SWEEP_QUEUED_KEY = "outbox:sweep-queued"
SWEEP_QUEUED_SECONDS = 30


def kick_sweep() -> None:
    """After a commit that wrote outbox events: have a worker sweep now, unless a sweep is already queued.

    Never raises: if the broker is unreachable, the event rows are safe and the beat sweep delivers them.
    """
    from payments.tasks import deliver_due_events

    try:
        if not fastcache.add_once(SWEEP_QUEUED_KEY, timeout=SWEEP_QUEUED_SECONDS):
            return
        deliver_due_events.delay()
    except Exception as exc:
        metrics.count_exception(exc)
        logger.warning("could not queue a delivery sweep; the beat sweep will deliver the events")
        with contextlib.suppress(Exception):  # Redis itself is down: the mark expires on its own
            fastcache.forget(SWEEP_QUEUED_KEY)


def sweep_started() -> None:
    """A sweep is starting: a commit from now on queues another (this one may claim its events too)."""
    fastcache.forget(SWEEP_QUEUED_KEY)


def deliver_due() -> int:
    """Claim and deliver due events batch after batch within the sweep budget; the number attempted.

    When the first batch is full, one more sweep is queued so that other worker
    processes join in on a backlog.
    """
    from payments.tasks import deliver_due_events

    deadline = time.monotonic() + SWEEP_BUDGET_SECONDS
    batch_size = settings.ECARD_DELIVERY_BATCH_SIZE
    timeout = settings.ECARD_WEBHOOK_TIMEOUT_SECONDS
    total = 0
    helped = False
    while time.monotonic() + timeout < deadline:
        batch = claim_due(limit=batch_size)
        if not batch:
            break
        if len(batch) == batch_size and not helped:
            helped = True
            try:
                deliver_due_events.delay()
            except Exception as exc:  # broker trouble: this sweep carries on alone
                metrics.count_exception(exc)
                logger.warning("could not queue a helper sweep")
        _deliver_batch(batch)
        total += len(batch)
    return total


# --- Operators ---------------------------------------------------------------


@transaction.atomic
def outbox_replay(*, actor: Actor, event: OutboxEvent, reason: str = "") -> OutboxEvent:
    """A dead event becomes pending and due now, with the whole retry schedule ahead of it; a
    failing one (pending after failed attempts) is due now instead of at its next retry."""
    event = OutboxEvent.objects.select_for_update().get(pk=event.pk)
    failing = event.state == OutboxState.PENDING and event.attempts > 0
    if event.state != OutboxState.DEAD and not failing:
        raise DomainError(DeliveryErrorCode.INVALID_STATE, _("Only a dead or failing event can be replayed."))
    before = {"state": event.state, "attempts": event.attempts}
    event.state = OutboxState.PENDING
    if not failing:
        event.attempts = 0
    event.next_attempt_at = timezone.now()
    event.save(update_fields=["state", "attempts", "next_attempt_at"])
    audit_record(
        actor=actor,
        action="outbox_event.replay",
        object_type="outbox_event",
        object_id=event.public_id,
        before=before,
        after={"state": event.state, "attempts": event.attempts},
        reason=reason,
    )
    transaction.on_commit(kick_sweep)  # the event is due now: the sweep claims it
    return event
