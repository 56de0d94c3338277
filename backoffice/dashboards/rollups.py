"""Dashboard rollups, kept up by a periodic tick from the audit log, never by full scans at render time.

Every object that counts (citizen, e-card, wallet linkage, family binding,
paid settlement) has one `RollupFact`: what it currently adds to the
counters (`RollupCount` for current state, `RollupDaily` for per-day flows).
The tick reads the audit events written since its watermark, works out which
objects they touched, recomputes those objects' facts from their rows and
applies only the difference (new contributions minus old) to the counters.
So a tick is idempotent: re-reading an event, or an object touched twice,
changes nothing; an e-card revoked through a cascade is caught because a
touched citizen refreshes all of that citizen's cards, linkages and bindings.

The audit `seq` is given at insert, not at commit (the chain is built later,
portal/audit.py): a transaction may commit a lower `seq` after a higher one
was read. The watermark therefore keeps the skipped numbers as gaps and looks
them up again on every tick until they appear or are older than GAP_TTL
(a transaction that rolled back leaves its number unused forever).

`rollups_rebuild()` recomputes everything (the `rebuild_rollups` command, the
demo seed, the benchmark). It reads the watermark first, so that whatever
commits while it scans is folded in again, harmlessly, by the next tick.
"""

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from insurance.models import Certificate, Citizen, CitizenStatus
from payments.models import FamilyBinding, LinkageState, Settlement, WalletLinkage
from portal.models import AuditEvent, RollupCount, RollupDaily, RollupFact, RollupWatermark

logger = logging.getLogger(__name__)

GAP_TTL = dt.timedelta(hours=1)
# How many audit numbers below the newest read may still be in flight (kept as gaps).
GAP_WINDOW = 20_000
TICK_BATCH = 5000
CHUNK = 2000

CITIZEN, CERTIFICATE, LINKAGE, BINDING, SETTLEMENT = "citizen", "certificate", "linkage", "binding", "settlement"

# Keys of the counters: ("c", region, metric, dim) for RollupCount, ("d", region, day, metric, dim) for RollupDaily.
Key = tuple


class Fact(NamedTuple):
    kind: str
    object_id: int
    region_code: str
    partner_id: int | None = None
    state: str = ""
    month: dt.date | None = None
    day1: dt.date | None = None
    day2: dt.date | None = None
    amount_fen: int = 0
    total_fen: int = 0


_FACT_FIELDS = Fact._fields


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _day(value: dt.datetime | None, zone: ZoneInfo) -> dt.date | None:
    return value.astimezone(zone).date() if value is not None else None


def month_key(value: dt.date) -> str:
    return value.strftime("%Y-%m")


# --- What each object adds -------------------------------------------------------------------


def contributions(fact: Fact) -> Iterator[tuple[Key, int]]:
    """The counters one fact adds to (the one definition, used by the tick and the rebuild)."""
    r = fact.region_code
    if fact.kind == CITIZEN:
        yield ("c", r, "citizens", fact.state), 1
        if fact.state == CitizenStatus.ACTIVE and fact.month is not None:
            yield ("c", r, "cohort", month_key(fact.month)), 1
        if fact.day1 is not None:
            yield ("d", r, fact.day1, "citizens_new", ""), 1
    elif fact.kind == CERTIFICATE:
        yield ("c", r, "cards", fact.state), 1
        if fact.day1 is not None:
            yield ("d", r, fact.day1, "cards_issued", ""), 1
        if fact.day2 is not None:
            yield ("d", r, fact.day2, "cards_activated", ""), 1
    elif fact.kind == LINKAGE:
        if fact.state == LinkageState.ACTIVE:
            yield ("c", r, "linkages", str(fact.partner_id)), 1
        if fact.day1 is not None:
            yield ("d", r, fact.day1, "linkages_new", str(fact.partner_id)), 1
    elif fact.kind == BINDING:
        yield ("c", r, "bindings", fact.state), 1
    elif fact.kind == SETTLEMENT:
        if fact.day1 is not None:
            yield ("d", r, fact.day1, "settled", ""), 1
            yield ("d", r, fact.day1, "fund_fen", ""), fact.amount_fen
            yield ("d", r, fact.day1, "total_fen", ""), fact.total_fen
        if fact.day2 is not None:
            yield ("d", r, fact.day2, "refunded", ""), 1
            yield ("d", r, fact.day2, "refund_fund_fen", ""), fact.amount_fen
            yield ("d", r, fact.day2, "refund_total_fen", ""), fact.total_fen


def citizen_facts(queryset: QuerySet) -> Iterator[Fact]:
    zone = _zone()
    rows = queryset.values_list("id", "region_id", "status", "birth_date", "created_at")
    for pk, region, status, birth, created in rows.iterator(chunk_size=10_000):
        yield Fact(CITIZEN, pk, region, state=status, month=birth.replace(day=1), day1=_day(created, zone))


def certificate_facts(queryset: QuerySet) -> Iterator[Fact]:
    zone = _zone()
    rows = queryset.values_list("id", "citizen__region_id", "state", "issued_at", "activated_at")
    for pk, region, state, issued, activated in rows.iterator(chunk_size=10_000):
        yield Fact(CERTIFICATE, pk, region, state=state, day1=_day(issued, zone), day2=_day(activated, zone))


def linkage_facts(queryset: QuerySet) -> Iterator[Fact]:
    zone = _zone()
    rows = queryset.values_list("id", "citizen__region_id", "partner_id", "state", "created_at")
    for pk, region, partner, state, created in rows.iterator(chunk_size=10_000):
        yield Fact(LINKAGE, pk, region, partner_id=partner, state=state, day1=_day(created, zone))


def binding_facts(queryset: QuerySet) -> Iterator[Fact]:
    """A binding counts in the beneficiary's region: it is that region's clerks who decide it."""
    zone = _zone()
    rows = queryset.values_list("id", "beneficiary__region_id", "partner_id", "state", "created_at")
    for pk, region, partner, state, created in rows.iterator(chunk_size=10_000):
        yield Fact(BINDING, pk, region, partner_id=partner, state=state, day1=_day(created, zone))


def settlement_facts(queryset: QuerySet) -> Iterator[Fact]:
    """Only paid (and later refunded) settlements count: spend is what was paid, on the day it was paid;
    a refund counts back on its own day. The region is the insured citizen's, as in the audit log."""
    zone = _zone()
    rows = queryset.filter(paid_at__isnull=False).values_list(
        "id", "citizen__region_id", "partner_id", "state", "paid_at", "refunded_at", "fund_fen", "total_fen"
    )
    for pk, region, partner, state, paid, refunded, fund, total in rows.iterator(chunk_size=10_000):
        yield Fact(
            SETTLEMENT,
            pk,
            region,
            partner_id=partner,
            state=state,
            day1=_day(paid, zone),
            day2=_day(refunded, zone),
            amount_fen=fund,
            total_fen=total,
        )


def _facts_of_citizens(citizen_ids: list[int]) -> Iterator[Fact]:
    yield from citizen_facts(Citizen.objects.filter(id__in=citizen_ids))
    yield from certificate_facts(Certificate.objects.filter(citizen_id__in=citizen_ids))
    yield from linkage_facts(WalletLinkage.objects.filter(citizen_id__in=citizen_ids))
    yield from binding_facts(
        FamilyBinding.objects.filter(Q(beneficiary_id__in=citizen_ids) | Q(holder_citizen_id__in=citizen_ids))
    )


# --- Applying differences ----------------------------------------------------------------------


def _add(deltas: Counter, fact: Fact, sign: int) -> None:
    for key, value in contributions(fact):
        deltas[key] += sign * value


def _apply(deltas: Counter, *, empty: bool = False) -> None:
    """Add the deltas to the counters (the caller holds the watermark lock: no other writer).
    `empty`: the counters were just cleared, nothing to read first."""
    counts = {key[1:]: v for key, v in deltas.items() if key[0] == "c" and v}
    daily = {key[1:]: v for key, v in deltas.items() if key[0] == "d" and v}
    if empty:
        RollupCount.objects.bulk_create(
            [RollupCount(region_code=k[0], metric=k[1], dim=k[2], value=v) for k, v in counts.items()], batch_size=2000
        )
        RollupDaily.objects.bulk_create(
            [RollupDaily(region_code=k[0], day=k[1], metric=k[2], dim=k[3], value=v) for k, v in daily.items()],
            batch_size=2000,
        )
        return
    if counts:
        existing = {
            (row.region_code, row.metric, row.dim): row
            for row in RollupCount.objects.filter(
                region_code__in={k[0] for k in counts},
                metric__in={k[1] for k in counts},
                dim__in={k[2] for k in counts},
            )
        }
        changed, new = [], []
        for key, value in counts.items():
            row = existing.get(key)
            if row is None:
                new.append(RollupCount(region_code=key[0], metric=key[1], dim=key[2], value=value))
            else:
                row.value += value
                changed.append(row)
        RollupCount.objects.bulk_update(changed, ["value"], batch_size=1000)
        RollupCount.objects.bulk_create(new, batch_size=1000)
    if daily:
        existing_daily = {
            (row.region_code, row.day, row.metric, row.dim): row
            for row in RollupDaily.objects.filter(
                region_code__in={k[0] for k in daily},
                day__in={k[1] for k in daily},
                metric__in={k[2] for k in daily},
                dim__in={k[3] for k in daily},
            )
        }
        changed_daily, new_daily = [], []
        for key, value in daily.items():
            row = existing_daily.get(key)
            if row is None:
                new_daily.append(RollupDaily(region_code=key[0], day=key[1], metric=key[2], dim=key[3], value=value))
            else:
                row.value += value
                changed_daily.append(row)
        RollupDaily.objects.bulk_update(changed_daily, ["value"], batch_size=1000)
        RollupDaily.objects.bulk_create(new_daily, batch_size=1000)


def _fact_model(fact: Fact) -> RollupFact:
    return RollupFact(**fact._asdict())


def refresh_objects(*, citizen_ids: Iterable[int] = (), settlement_ids: Iterable[int] = ()) -> int:
    """Recompute the facts of these citizens (with their cards, linkages, bindings) and settlements,
    and apply the differences. Idempotent. Returns how many facts changed."""
    citizen_ids, settlement_ids = sorted(set(citizen_ids)), sorted(set(settlement_ids))
    changed = 0
    for start in range(0, max(len(citizen_ids), len(settlement_ids)), CHUNK):
        new = list(_facts_of_citizens(citizen_ids[start : start + CHUNK])) if citizen_ids[start : start + CHUNK] else []
        if settlement_ids[start : start + CHUNK]:
            new += settlement_facts(Settlement.objects.filter(id__in=settlement_ids[start : start + CHUNK]))
        changed += _replace_facts(new)
    return changed


def _replace_facts(new: list[Fact]) -> int:
    if not new:
        return 0
    by_kind: dict[str, list[int]] = {}
    for fact in new:
        by_kind.setdefault(fact.kind, []).append(fact.object_id)
    condition = Q()
    for kind, ids in by_kind.items():
        condition |= Q(kind=kind, object_id__in=ids)
    old = {(row[0], row[1]): Fact(*row) for row in RollupFact.objects.filter(condition).values_list(*_FACT_FIELDS)}
    deltas: Counter = Counter()
    stale: list[Fact] = []
    fresh: list[Fact] = []
    for fact in new:
        before = old.get((fact.kind, fact.object_id))
        if before == fact:
            continue
        if before is not None:
            _add(deltas, before, -1)
            stale.append(before)
        _add(deltas, fact, +1)
        fresh.append(fact)
    if not fresh:
        return 0
    _apply(deltas)
    stale_by_kind: dict[str, list[int]] = {}
    for fact in stale:
        stale_by_kind.setdefault(fact.kind, []).append(fact.object_id)
    for kind, ids in stale_by_kind.items():
        RollupFact.objects.filter(kind=kind, object_id__in=ids).delete()
    RollupFact.objects.bulk_create([_fact_model(f) for f in fresh], batch_size=1000)
    return len(fresh)


# --- The tick ----------------------------------------------------------------------------------


def _lock_watermark() -> RollupWatermark:
    RollupWatermark.objects.get_or_create(id=1)
    return RollupWatermark.objects.select_for_update().get(id=1)


def _touched(events: list[tuple]) -> tuple[set[int], set[int]]:
    """The citizens and settlements that the audit events name (directly, or through a card, a linkage...)."""
    citizen_ids: set[int] = set()
    numbers, linkages, bindings, settlements, imports = set(), set(), set(), set(), []
    for seq, object_type, object_id, action in events:
        if object_type == "citizen" and object_id.isdigit():
            citizen_ids.add(int(object_id))
        elif object_type == "certificate":
            numbers.add(object_id)
        elif object_type == "linkage":
            linkages.add(object_id)
        elif object_type == "family_binding":
            bindings.add(object_id)
        elif object_type == "settlement":
            settlements.add(object_id)
        elif action == "citizen.import_batch":
            imports.append(seq)
    if numbers:
        citizen_ids.update(Certificate.objects.filter(number__in=numbers).values_list("citizen_id", flat=True))
    if linkages:
        citizen_ids.update(WalletLinkage.objects.filter(public_id__in=linkages).values_list("citizen_id", flat=True))
    if bindings:
        for holder, beneficiary in FamilyBinding.objects.filter(public_id__in=bindings).values_list(
            "holder_citizen_id", "beneficiary_id"
        ):
            citizen_ids.update((holder, beneficiary))
    if imports:
        # A bulk import writes one event per batch that names every citizen it created.
        for after in AuditEvent.objects.filter(seq__in=imports).values_list("after", flat=True):
            for item in (after or {}).get("citizens", []):
                citizen_ids.add(int(item[0]))
    settlement_ids = (
        set(Settlement.objects.filter(public_id__in=settlements).values_list("id", flat=True)) if settlements else set()
    )
    return citizen_ids, settlement_ids


def rollups_tick(*, batch: int = TICK_BATCH, now: dt.datetime | None = None) -> int:
    """Fold the audit events written since the last tick into the rollups. Returns the events read."""
    total = 0
    while True:
        read, more = _tick_once(batch=batch, now=now or timezone.now())
        total += read
        if not more:
            return total


@transaction.atomic
def _tick_once(*, batch: int, now: dt.datetime) -> tuple[int, bool]:
    watermark = _lock_watermark()
    gaps = {int(seq): first for seq, first in (watermark.gaps or {}).items()}
    condition = Q(seq__gt=watermark.last_seq)
    if gaps:
        condition |= Q(seq__in=list(gaps))
    events = list(
        AuditEvent.objects.filter(condition)
        .order_by("seq")
        .values_list("seq", "object_type", "object_id", "action")[:batch]
    )
    citizen_ids, settlement_ids = _touched(events)
    refresh_objects(citizen_ids=citizen_ids, settlement_ids=settlement_ids)
    seen = {event[0] for event in events}
    for seq in seen:
        gaps.pop(seq, None)
    new_last = max((seq for seq in seen if seq > watermark.last_seq), default=watermark.last_seq)
    stamp = now.isoformat()
    # A jump of the sequence (a first tick, a burst of rollbacks) is not all in flight: only the last
    # numbers below the newest can belong to transactions still running.
    for seq in range(max(watermark.last_seq + 1, new_last - GAP_WINDOW), new_last):
        if seq not in seen:
            gaps[seq] = stamp
    horizon = now - GAP_TTL
    watermark.gaps = {str(seq): first for seq, first in gaps.items() if dt.datetime.fromisoformat(first) > horizon}
    new_events = sum(1 for seq in seen if seq > watermark.last_seq)
    watermark.last_seq = new_last
    watermark.ticked_at = now
    watermark.save(update_fields=["gaps", "last_seq", "ticked_at"])
    return new_events, len(events) >= batch and new_events > 0


# --- The rebuild -------------------------------------------------------------------------------


def _all_facts() -> Iterator[Fact]:
    yield from citizen_facts(Citizen.objects.order_by())
    yield from certificate_facts(Certificate.objects.order_by())
    yield from linkage_facts(WalletLinkage.objects.order_by())
    yield from binding_facts(FamilyBinding.objects.order_by())
    yield from settlement_facts(Settlement.objects.order_by())


def _copy_rows(rows: list[Fact]) -> None:
    columns = ", ".join(_FACT_FIELDS)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {RollupFact._meta.db_table} ({columns}) FROM STDIN") as copy:
            for fact in rows:
                copy.write_row(fact)


def _write_facts_copy(facts: Iterable[Fact], deltas: Counter) -> int:
    """COPY the facts in slices (far cheaper than INSERTs for millions of rows); a slice at a time,
    because the server-side cursor reading the objects shares the connection."""
    written = 0
    buffer: list[Fact] = []
    for fact in facts:
        _add(deltas, fact, +1)
        buffer.append(fact)
        if len(buffer) >= 50_000:
            _copy_rows(buffer)
            written += len(buffer)
            buffer = []
    _copy_rows(buffer)
    return written + len(buffer)


@transaction.atomic
def rollups_rebuild(*, now: dt.datetime | None = None) -> int:
    """Recompute every fact and counter. Returns the number of facts."""
    now = now or timezone.now()
    watermark = _lock_watermark()
    last_seq = AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0
    # Numbers not (yet) visible below the last: transactions that may still commit.
    low = max(0, last_seq - GAP_WINDOW)
    present = set(AuditEvent.objects.filter(seq__gt=low, seq__lte=last_seq).values_list("seq", flat=True))
    gaps = {str(seq): now.isoformat() for seq in range(low + 1, last_seq + 1) if seq not in present}
    RollupCount.objects.all().delete()
    RollupDaily.objects.all().delete()
    deltas: Counter = Counter()
    # Only the tick and the rebuild read facts, both under the watermark lock.
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {RollupFact._meta.db_table}")
    written = _write_facts_copy(_all_facts(), deltas)
    _apply(deltas, empty=True)
    watermark.last_seq = last_seq
    watermark.gaps = gaps
    watermark.rebuilt_at = now
    watermark.ticked_at = now
    watermark.save(update_fields=["last_seq", "gaps", "rebuilt_at", "ticked_at"])
    logger.info("dashboard rollups rebuilt: %s facts", written)
    return written
