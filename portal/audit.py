"""The append-only, HMAC-chained audit log.

Every service writes one event in the transaction of its change. The write
takes no shared lock: `audit_record` inserts the row with `row_hmac`, an HMAC
of its content (insertion number included), and the id of its transaction.
The chainer (`audit_chain_pending`, run by Celery beat every few seconds and
by `verify_audit_chain`) then gives committed rows their place in the one
chain, under the chain head's lock:
`hash = HMAC(key, prev_hash | chain_seq | row_hmac)`.

The chainer keeps no cursor: it takes every row it can see without a place
(`chain_seq IS NULL`, a partial index), i.e. committed rows and its own
transaction's. A transaction that commits late is simply chained by the next
run, never skipped. (An xmin horizon, as the `/events` feed uses, is not
needed here, and would stall the chainer behind any long transaction of the
whole PostgreSQL cluster.) Rows are taken in transaction-id order, so one
transaction's rows stay together.

`verify_chain` recomputes the chain and each unchained row's HMAC, and reports
rows edited, inserted or deleted behind our back. Before/after snapshots carry
masked personal data only.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from portal import prepared
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
_INSERT_COLUMNS = (*_FIELDS, "xid", "row_hmac", "prev_hash", "hash")


def _canonical(values: dict) -> bytes:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _row_values(event: AuditEvent) -> dict:
    values = {name: getattr(event, name) for name in _FIELDS}
    values["created_at"] = event.created_at.astimezone(UTC).isoformat(timespec="microseconds")
    return values


def _mac(message: bytes) -> str:
    return hmac.new(settings.ECARD_AUDIT_HMAC_KEY, message, hashlib.sha256).hexdigest()


def compute_row_hmac(event: AuditEvent) -> str:
    """The row's own seal, set at insert: what it says, and its insertion number."""
    return _mac(b"row|" + _canonical(_row_values(event)))


def compute_hash(prev_hash: str, event: AuditEvent) -> str:
    """The chained hash of a row at `event.chain_seq` following `prev_hash`."""
    if not event.row_hmac:
        # Written before 0004: the chain covered the content directly, `seq` being its place.
        return _mac(prev_hash.encode() + b"|" + _canonical(_row_values(event)))
    return _mac(f"{prev_hash}|{event.chain_seq}|{event.row_hmac}".encode())


def _stored_ip(ip: str | None) -> str | None:
    """The address as the database will give it back (IPv6 compressed, lower case),
    so that the hash computed now matches the row read later."""
    return AuditEvent._meta.get_field("source_ip").get_prep_value(ip or None)


def audit_event(
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
    """The event as it will be stored, not yet numbered nor written (see `audit_record`)."""
    event = AuditEvent(
        created_at=timezone.now(),
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label[:150],
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        region_code=region_code or "",
        reason=reason[:256],
        source_ip=_stored_ip(actor.ip),
    )
    # Round-trip the JSON so that what we hash is what the database gives back.
    event.before = json.loads(_canonical(before)) if before is not None else None
    event.after = json.loads(_canonical(after)) if after is not None else None
    return event


# A new row's number and its transaction's id, as two SELECT columns. `audit_record` reads them in a
# statement of their own; a service that runs a statement in the transaction anyway may read them
# with it and write the row inside a later statement of its own (`audit_insert`): payments/settlements/store.py
# does, two statements fewer per settlement write.
NUMBER_COLUMNS = (
    "nextval(pg_get_serial_sequence('portal_auditevent', 'seq')) AS \"audit_seq\","
    ' pg_current_xact_id()::text::bigint AS "audit_xid"'
)
_NEXT_SQL = f"SELECT {NUMBER_COLUMNS}"
_INSERT_SQL: str | None = None


def audit_next_number() -> tuple[int, int]:
    """(seq, xid) for a new row of this transaction, in a statement of its own."""
    return prepared.fetch_one(_NEXT_SQL, [])


def audit_insert(event: AuditEvent, seq: int, xid: int) -> tuple[str, list]:
    """Number and seal `event` (`seq`, `xid` as read by NUMBER_COLUMNS in this transaction): its
    `INSERT ... RETURNING seq` and parameters, to run alone or as a part of a larger statement."""
    fields = [AuditEvent._meta.get_field(name) for name in _INSERT_COLUMNS]
    sql = audit_insert_sql()
    event.seq, event.xid = seq, xid
    event.row_hmac = compute_row_hmac(event)
    return sql, [field.get_db_prep_save(getattr(event, field.attname), connection) for field in fields]


def audit_insert_sql() -> str:
    """`audit_insert`'s statement (constant per process)."""
    global _INSERT_SQL
    if _INSERT_SQL is None:
        fields = [AuditEvent._meta.get_field(name) for name in _INSERT_COLUMNS]
        _INSERT_SQL = (
            f"INSERT INTO portal_auditevent ({', '.join(f.column for f in fields)})"  # noqa: S608 (names from the models; values are parameters)
            f" VALUES ({', '.join(['%s'] * len(fields))}) RETURNING seq"
        )
    return _INSERT_SQL


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
    return audit_record_event(
        audit_event(
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            region_code=region_code,
            before=before,
            after=after,
            reason=reason,
        )
    )


def audit_record_event(event: AuditEvent) -> AuditEvent:
    """Write an event built by `audit_event` (what `audit_record` does with the one it builds)."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit events must be written inside the transaction of the change")
    # Two plain statements and no shared lock: the number and the transaction id, then the row.
    # Both prepared once per connection (portal/prepared.py): every settlement write runs them.
    prepared.fetch_one(*audit_insert(event, *audit_next_number()))
    return event


def _write_chain(rows: list[AuditEvent]) -> None:
    # One UPDATE joined to a VALUES list: linear in the batch, unlike bulk_update's CASE per column.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE portal_auditevent AS a SET chain_seq = v.chain_seq, prev_hash = v.prev_hash, hash = v.hash"  # noqa: S608 (placeholders only; values are parameters)
            " FROM (VALUES " + ", ".join(["(%s::bigint, %s::bigint, %s, %s)"] * len(rows)) + ")"
            " AS v(seq, chain_seq, prev_hash, hash) WHERE a.seq = v.seq AND a.chain_seq IS NULL",
            [value for row in rows for value in (row.seq, row.chain_seq, row.prev_hash, row.hash)],
        )
        if cursor.rowcount != len(rows):  # cannot happen under the head lock; never seal a partial batch
            raise RuntimeError("audit chainer: rows changed under the chain head lock")


def audit_chain_pending(batch_size: int = 2000) -> int:
    """Give the committed unchained rows their place in the chain; returns how many were chained.

    One chainer at a time (the head's row lock; another one waits, then finds
    nothing left). A row whose own HMAC does not match is left unchained, so
    that a forged row is never sealed into the chain; `verify_chain` reports it.
    """
    chained = 0
    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().filter(id=1).first()
        if head is None:
            AuditChainHead.objects.get_or_create(id=1)
            head = AuditChainHead.objects.select_for_update().get(id=1)
        while True:
            rows = list(AuditEvent.objects.filter(chain_seq__isnull=True).order_by("xid", "seq")[:batch_size])
            good = [row for row in rows if row.row_hmac and hmac.compare_digest(row.row_hmac, compute_row_hmac(row))]
            for row in good:
                row.chain_seq = head.last_seq + 1
                row.prev_hash = head.last_hash
                row.hash = compute_hash(row.prev_hash, row)
                head.last_seq, head.last_hash = row.chain_seq, row.hash
            if good:
                _write_chain(good)
                chained += len(good)
            if len(rows) < batch_size or not good:
                break
        if chained:
            head.save(update_fields=["last_seq", "last_hash"])
    return chained


@dataclass
class ChainProblem:
    seq: int  # the row's number (`seq`), or the chain position for rows that are missing
    problem: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.problem}"


def verify_chain(batch_size: int = 5000) -> list[ChainProblem]:
    """Recompute the whole chain and the seal of every unchained row; an empty list means intact.

    The head is read first, so rows chained while we verify are not taken for
    an attack: they are checked like the others, and the head is compared
    with the row it named when we read it. Deleting an unchained row cannot be
    told from a rolled-back write; the chainer's short period bounds that window.
    """
    problems: list[ChainProblem] = []
    head = AuditChainHead.objects.filter(id=1).first()
    head_seq = head.last_seq if head is not None else 0
    hash_at_head: str | None = None
    expected = 1
    prev_hash = GENESIS
    last_seen = 0
    # No lower bound on the first batch: a row slipped in at position 0 or less must be seen too.
    cursor_pos: int | None = None
    while True:
        queryset = AuditEvent.objects.filter(chain_seq__isnull=False).order_by("chain_seq")
        if cursor_pos is not None:
            queryset = queryset.filter(chain_seq__gt=cursor_pos)
        rows = list(queryset[:batch_size])
        if not rows:
            break
        for event in rows:
            cursor_pos = position = event.chain_seq
            if position < expected:
                problems.append(ChainProblem(event.seq, "place in the chain before the first row (inserted)"))
                continue
            if position != expected:
                problems.append(
                    ChainProblem(expected, f"chain positions {expected} to {position - 1} are missing (deleted)")
                )
            if event.prev_hash != prev_hash:
                problems.append(ChainProblem(event.seq, "does not follow the row before it (inserted or reordered)"))
            sealed = not event.row_hmac or hmac.compare_digest(event.row_hmac, compute_row_hmac(event))
            if not sealed or compute_hash(event.prev_hash, event) != event.hash:
                problems.append(ChainProblem(event.seq, "content does not match its hash (edited or forged)"))
            prev_hash = event.hash
            expected = position + 1
            last_seen = position
            if position == head_seq:
                hash_at_head = event.hash
    if head is None:
        if last_seen:
            problems.append(ChainProblem(last_seen, "the chain head row is missing"))
    elif head_seq > last_seen:
        problems.append(
            ChainProblem(head_seq, f"chain ends at {last_seen} but the head says {head_seq} (rows deleted at the end)")
        )
    elif head_seq and hash_at_head != head.last_hash:
        problems.append(ChainProblem(head_seq, "the row the chain head names does not match it"))
    # The tail not chained yet: each row must still carry its own seal.
    cursor_seq: int | None = None
    while True:
        queryset = AuditEvent.objects.filter(chain_seq__isnull=True).order_by("seq")
        if cursor_seq is not None:
            queryset = queryset.filter(seq__gt=cursor_seq)
        rows = list(queryset[:batch_size])
        if not rows:
            break
        for event in rows:
            cursor_seq = event.seq
            if not event.row_hmac or not hmac.compare_digest(event.row_hmac, compute_row_hmac(event)):
                problems.append(
                    ChainProblem(event.seq, "content does not match its hash (edited or forged, not chained yet)")
                )
    return problems
