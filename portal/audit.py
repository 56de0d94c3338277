"""The append-only, HMAC-chained audit log.

Every service writes one event in the transaction of its change. The chain
head row is locked for the append, so events form one line; `verify_chain`
recomputes it and reports rows edited, inserted or deleted behind our back.
Before/after snapshots carry masked personal data only.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from portal.actors import Actor
from portal.models import AuditChainHead, AuditEvent

GENESIS = "0" * 64
_FIELDS = (
    "seq",
    "created_at",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "region_code",
    "before",
    "after",
    "reason",
    "source_ip",
)


def _canonical(values: dict) -> bytes:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _row_values(event: AuditEvent) -> dict:
    values = {name: getattr(event, name) for name in _FIELDS}
    values["created_at"] = event.created_at.astimezone(UTC).isoformat(timespec="microseconds")
    return values


def compute_hash(prev_hash: str, event: AuditEvent) -> str:
    message = prev_hash.encode() + b"|" + _canonical(_row_values(event))
    return hmac.new(settings.ECARD_AUDIT_HMAC_KEY, message, hashlib.sha256).hexdigest()


def _stored_ip(ip: str | None) -> str | None:
    """The address as the database will give it back (IPv6 compressed, lower case),
    so that the hash computed now matches the row read later."""
    return AuditEvent._meta.get_field("source_ip").get_prep_value(ip or None)


def audit_record(
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | int,
    region_code: str = "",
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
) -> AuditEvent:
    if not connection.in_atomic_block:
        raise RuntimeError("audit events must be written inside the transaction of the change")
    head = AuditChainHead.objects.select_for_update().filter(id=1).first()
    if head is None:
        AuditChainHead.objects.get_or_create(id=1)
        head = AuditChainHead.objects.select_for_update().get(id=1)
    event = AuditEvent(
        seq=head.last_seq + 1,
        created_at=timezone.now(),
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label[:150],
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        region_code=region_code or "",
        before=before,
        after=after,
        reason=reason[:256],
        source_ip=_stored_ip(actor.ip),
        prev_hash=head.last_hash,
    )
    # Round-trip the JSON so that what we hash is what the database gives back.
    event.before = json.loads(_canonical(before)) if before is not None else None
    event.after = json.loads(_canonical(after)) if after is not None else None
    event.hash = compute_hash(head.last_hash, event)
    event.save(force_insert=True)
    head.last_seq = event.seq
    head.last_hash = event.hash
    head.save(update_fields=["last_seq", "last_hash"])
    return event


@dataclass
class ChainProblem:
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.problem}"


def verify_chain(batch_size: int = 5000) -> list[ChainProblem]:
    """Recompute the whole chain; an empty list means it is intact.

    The head is read first, so rows appended while we verify are not taken
    for an attack: they are checked like the others, and the head is compared
    with the row it named when we read it.
    """
    problems: list[ChainProblem] = []
    head = AuditChainHead.objects.filter(id=1).first()
    head_seq = head.last_seq if head is not None else 0
    hash_at_head: str | None = None
    expected_seq = 1
    prev_hash = GENESIS
    last_seen = 0
    # No lower bound on the first batch: a row slipped in with a sequence
    # number of 0 or less must be seen too.
    cursor_seq: int | None = None
    while True:
        queryset = AuditEvent.objects.order_by("seq")
        if cursor_seq is not None:
            queryset = queryset.filter(seq__gt=cursor_seq)
        rows = list(queryset[:batch_size])
        if not rows:
            break
        for event in rows:
            cursor_seq = event.seq
            if event.seq < expected_seq:
                problems.append(ChainProblem(event.seq, "sequence number before the first row (inserted)"))
                continue
            if event.seq != expected_seq:
                problems.append(ChainProblem(expected_seq, f"rows {expected_seq} to {event.seq - 1} are missing (deleted)"))
            if event.prev_hash != prev_hash:
                problems.append(ChainProblem(event.seq, "does not follow the row before it (inserted or reordered)"))
            if compute_hash(event.prev_hash, event) != event.hash:
                problems.append(ChainProblem(event.seq, "content does not match its hash (edited or forged)"))
            prev_hash = event.hash
            expected_seq = event.seq + 1
            last_seen = event.seq
            if event.seq == head_seq:
                hash_at_head = event.hash
    if head is None:
        if last_seen:
            problems.append(ChainProblem(last_seen, "the chain head row is missing"))
    elif head_seq > last_seen:
        problems.append(ChainProblem(head_seq, f"chain ends at {last_seen} but the head says {head_seq} (rows deleted at the end)"))
    elif head_seq and hash_at_head != head.last_hash:
        problems.append(ChainProblem(head_seq, "the row the chain head names does not match it"))
    return problems
