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
        source_ip=actor.ip,
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
    """Recompute the whole chain; an empty list means it is intact."""
    problems: list[ChainProblem] = []
    expected_seq = 1
    prev_hash = GENESIS
    last_seen = 0
    while True:
        rows = list(AuditEvent.objects.filter(seq__gt=last_seen).order_by("seq")[:batch_size])
        if not rows:
            break
        for event in rows:
            if event.seq != expected_seq:
                problems.append(ChainProblem(expected_seq, f"rows {expected_seq} to {event.seq - 1} are missing"))
            if event.prev_hash != prev_hash:
                problems.append(ChainProblem(event.seq, "does not follow the row before it (inserted or reordered)"))
            if compute_hash(event.prev_hash, event) != event.hash:
                problems.append(ChainProblem(event.seq, "content does not match its hash (edited)"))
            prev_hash = event.hash
            expected_seq = event.seq + 1
            last_seen = event.seq
    head = AuditChainHead.objects.filter(id=1).first()
    if head is not None and head.last_seq != 0:
        if head.last_seq != last_seen:
            problems.append(ChainProblem(head.last_seq, f"chain ends at {last_seen} but the head says {head.last_seq} (rows deleted at the end)"))
        elif head.last_hash != prev_hash:
            problems.append(ChainProblem(head.last_seq, "last row does not match the chain head"))
    return problems
