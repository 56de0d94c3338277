"""Demo settlements: the last week of bills paid with the demo's e-cards, so that the settlement
list, the risk queue, the dashboards' settlement charts and the fund figures have something to show.

Every settlement is made by the partner services a wallet's API calls run: a QR token minted for a
linkage (`qr_token_mint`), the bill split against the policy, the citizen-year accumulator and the
personal account (`settlement_create`), then confirmed, refunded, cancelled or expired by their
services. So the money is the services' own: the accumulators equal their settlements, no cap or
deductible is passed, the ledger holds every debit and refund, the audit log and the partners'
outbox hold every step.

The one thing the services cannot do is create a settlement in the past: `settlement_create`
takes the present, as a partner's call does. Each past settlement is therefore created now and
then, in the same transaction, moved to its planned moment by rewriting its timestamp columns
only (`created_at`, `expires_at`, and the issue, expiry and use times of its QR token); the later
steps (confirm, refund, cancel, expire) take that past moment as their `now`. The audit events and
ledger entries keep the time they were really written, the time of the seeding; no amount is
touched. A past moment stays in the current year (Asia/Shanghai), the year whose accumulator the
settlement reserved in. The few pending settlements are left at the present, as a partner's
would be: the beat's expiry sweep expires them fifteen minutes later, as in production.

After the settlements, the risk rules scan each day of the week, so that the risk queue has the
open flags the planned facility-hopping cards and large bills raise.

The plan comes from a fixed random seed; the whole step is one transaction that ends with a
`demo.settlements_seeded` audit event, so a second run does nothing and an interrupted one leaves
nothing behind.
"""

import datetime as dt
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from backoffice.demo_plan import DEMO_SEED, PILOT_REGIONS
from insurance.catalogue_demo import SERVICES, facility_code
from insurance.models import CertificateState, Citizen, CitizenStatus, Scheme
from payments.ledger import services as ledger
from payments.models import LinkageState, Partner, QrToken, Settlement, SettlementState, WalletLinkage
from payments.risk.services import risk_scan_day
from payments.settlements import services as settlements
from payments.settlements.services import PAYMENT_WINDOW, LineInput
from payments.tokens import services as qr
from portal.actors import Actor
from portal.audit import audit_record
from portal.models import AuditEvent

SETTLEMENTS_SEEDED_ACTION = "demo.settlements_seeded"
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAYS = 7
# Opening hours of the facilities, Shanghai time; nothing is planned in the last minutes before the seeding.
OPENS, CLOSES = dt.time(7, 30), dt.time(21, 0)
QUIET = dt.timedelta(minutes=20)
WEEKEND_WEIGHT = 0.6
FACILITY_KINDS = {"hospital": 30, "clinic": 40, "pharmacy": 30}
# Employees pay part of their bills from the personal account when it has money.
ACCOUNT_USE = 0.6
REFUND_REASONS = ("患者退药，原路退回", "重复收费，原路退回", "检查项目未执行，退费")

Output = Callable[[str], None]
MAX_PRICE = {code: price for code, _zh, _en, _category, _unit, price in SERVICES}
CATEGORY = {code: category for code, _zh, _en, category, _unit, _price in SERVICES}


def _codes(category: str) -> list[str]:
    return [code for code, found in CATEGORY.items() if found == category]


LAB_TESTS, IMAGING = _codes("lab_test"), _codes("imaging")
DRUGS_A, DRUGS_B = _codes("drug_a"), _codes("drug_b")
NON_CATALOGUE, OTHER = _codes("non_catalogue"), _codes("other")
HOSPITAL_CONSULTATIONS = ("110200002", "110200003", "110200005")
MRI, INSULIN, DONKEY_HIDE_GELATIN = "210200001", "XA10AEA020B001", "NC0000000001"


def settlements_for(citizens: int) -> int:
    """How many settlements the demo plans for this many citizens: 300 for the default 2,000."""
    return max(40, min(320, citizens * 3 // 20))


# --- The plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """An active, linked e-card that can pay: one of its citizen's active wallet linkages."""

    linkage_id: int
    partner_code: str
    citizen_id: int
    region_code: str
    scheme: str


@dataclass(frozen=True)
class SettlementPlan:
    at: dt.datetime | None  # when it was created; None: now (a pending one)
    card: Card
    facility_code: str
    lines: tuple[LineInput, ...]
    use_account: bool
    outcome: str  # a SettlementState; `refunded` is paid, then refunded
    confirm_after: dt.timedelta = dt.timedelta(minutes=1)
    refund_after: dt.timedelta = dt.timedelta(hours=2)
    reason: str = ""


def _price(rng: random.Random, code: str) -> int:
    """Most facilities charge the catalogue's maximum; some a little less."""
    return round(MAX_PRICE[code] * rng.choice((1, 1, 1, 0.95, 0.9, 0.85)))


def _line(rng: random.Random, code: str, quantity: int = 1) -> LineInput:
    return LineInput(code, quantity, _price(rng, code))


def _bill(rng: random.Random, kind: str) -> tuple[LineInput, ...]:
    """An everyday bill at a hospital, a community clinic or a pharmacy."""
    lines: list[LineInput] = []
    if kind == "clinic":
        if rng.random() < 0.7:
            lines.append(_line(rng, "110100001"))
        lines.append(_line(rng, "110200001"))
        if rng.random() < 0.35:
            lines.append(_line(rng, rng.choice(LAB_TESTS[:3])))
        for code in rng.sample(DRUGS_A, rng.randint(1, 2)):
            lines.append(_line(rng, code, rng.randint(1, 3)))
    elif kind == "hospital":
        lines.append(_line(rng, "110100002"))
        lines.append(_line(rng, rng.choice(HOSPITAL_CONSULTATIONS)))
        if rng.random() < 0.6:
            lines.extend(_line(rng, code) for code in rng.sample(LAB_TESTS, rng.randint(1, 3)))
        if rng.random() < 0.4:
            lines.append(_line(rng, rng.choice(IMAGING)))
        for code in rng.sample(DRUGS_A + DRUGS_B, rng.randint(0, 3)):
            lines.append(_line(rng, code, 1 if code == INSULIN else rng.randint(1, 3)))
    else:
        for code in rng.sample(DRUGS_A + DRUGS_B, rng.randint(1, 3)):
            lines.append(_line(rng, code, rng.randint(1, 4)))
        if rng.random() < 0.2:
            lines.append(_line(rng, rng.choice(NON_CATALOGUE[1:])))
        if rng.random() < 0.15:
            lines.append(_line(rng, rng.choice(OTHER), rng.randint(1, 2)))
    return tuple(lines)


def _large_hospital_bill(rng: random.Random) -> tuple[LineInput, ...]:
    """Above the large-settlement threshold: imaging and a month of insulin for a whole family."""
    return (
        _line(rng, "110100002"),
        _line(rng, "110200003"),
        LineInput(MRI, 1, MAX_PRICE[MRI]),
        _line(rng, "210300002"),
        LineInput(INSULIN, 24, MAX_PRICE[INSULIN]),
    )


def _large_pharmacy_bill() -> tuple[LineInput, ...]:
    """Four boxes of a tonic outside the catalogue: the pattern the large-settlement rule looks for."""
    return (LineInput(DONKEY_HIDE_GELATIN, 4, MAX_PRICE[DONKEY_HIDE_GELATIN]),)


def opening_hours(now: dt.datetime, days: int = DAYS) -> list[tuple[dt.datetime, dt.datetime, float]]:
    """(from, to, weight) of each of the last `days` days' opening hours in Asia/Shanghai, cut
    to this year and to some minutes before `now`; weekends are quieter."""
    local = now.astimezone(SHANGHAI)
    year_start = dt.datetime(local.year, 1, 1, tzinfo=SHANGHAI)
    latest = now - QUIET
    periods = []
    for back in range(days):
        day = local.date() - dt.timedelta(days=back)
        start = max(dt.datetime.combine(day, OPENS, tzinfo=SHANGHAI), year_start)
        end = min(dt.datetime.combine(day, CLOSES, tzinfo=SHANGHAI), latest)
        if end > start:
            periods.append((start, end, WEEKEND_WEIGHT if day.weekday() >= 5 else 1.0))
    return periods


def _moment(rng: random.Random, periods: list[tuple[dt.datetime, dt.datetime, float]], now: dt.datetime) -> dt.datetime:
    if not periods:  # the first hours of a year: nothing before now belongs to this year's accumulator
        return now
    weights = [(end - start).total_seconds() * weight for start, end, weight in periods]
    start, end, _weight = rng.choices(periods, weights=weights)[0]
    return start + dt.timedelta(seconds=rng.uniform(0, (end - start).total_seconds()))


def _outcomes(count: int) -> list[SettlementState]:
    """Mostly paid; a few refunded, expired, cancelled and (still) pending, at least one of each."""
    refunded, expired = max(1, count // 20), max(1, count // 25)
    cancelled, pending = max(1, count // 50), max(1, count // 50)
    paid = max(0, count - refunded - expired - cancelled - pending)
    return (
        [SettlementState.PAID] * paid
        + [SettlementState.REFUNDED] * refunded
        + [SettlementState.EXPIRED] * expired
        + [SettlementState.CANCELLED] * cancelled
        + [SettlementState.PENDING_PAYMENT] * pending
    )


def plan_settlements(count: int, cards: list[Card], *, now: dt.datetime, seed: int = DEMO_SEED) -> list[SettlementPlan]:
    """`count` settlements (about: the risky ones come on top) over the last week, in time order,
    pending ones last."""
    if not cards:
        return []
    rng = random.Random(seed + 2)
    periods = opening_hours(now)
    by_region: dict[str, list[Card]] = {}
    for card in cards:
        by_region.setdefault(card.region_code, []).append(card)
    plans: list[SettlementPlan] = []

    def plan(at: dt.datetime | None, card: Card, facility: str, lines: tuple[LineInput, ...], outcome: str) -> None:
        use_account = card.scheme == Scheme.EMPLOYEE and rng.random() < ACCOUNT_USE
        plans.append(
            SettlementPlan(
                at=at,
                card=card,
                facility_code=facility,
                lines=lines,
                use_account=use_account,
                outcome=outcome,
                confirm_after=dt.timedelta(seconds=rng.randint(20, 180)),
                refund_after=dt.timedelta(minutes=rng.randint(30, 2 * 24 * 60)),
                reason=rng.choice(REFUND_REASONS) if outcome == SettlementState.REFUNDED else "",
            )
        )

    # The risky ones first, in the region of the demo's administrator where it has cards.
    home = "310000" if "310000" in by_region else cards[0].region_code
    others = sorted(code for code in by_region if code != home) or [home]
    # A card paying at more than three facilities in one day: its region's three and a pharmacy elsewhere.
    hoppers = [home] if count < 100 else [home, others[0]]
    for region in hoppers:
        card = rng.choice(by_region[region])
        elsewhere = next((code for code in sorted(PILOT_REGIONS) if code != region), region)
        first = _moment(rng, periods, now)
        facilities = [facility_code(kind, region) for kind in ("clinic", "hospital", "pharmacy")]
        facilities.append(facility_code("pharmacy", elsewhere))
        for index, facility in enumerate(facilities):
            at = min(first + dt.timedelta(minutes=40 * index + rng.randint(0, 20)), now - QUIET)
            plan(at if periods else None, card, facility, _bill(rng, "pharmacy"), SettlementState.PAID)
    # Bills above the large-settlement threshold.
    plan(
        _moment(rng, periods, now) if periods else None,
        rng.choice(by_region[home]),
        facility_code("hospital", home),
        _large_hospital_bill(rng),
        SettlementState.PAID,
    )
    region = others[-1]
    plan(
        _moment(rng, periods, now) if periods else None,
        rng.choice(by_region[region]),
        facility_code("pharmacy", region),
        _large_pharmacy_bill(),
        SettlementState.PAID,
    )

    outcomes = _outcomes(count)
    rng.shuffle(outcomes)
    for outcome in outcomes:
        card = rng.choice(cards)
        kind = rng.choices(list(FACILITY_KINDS), weights=list(FACILITY_KINDS.values()))[0]
        pending = outcome == SettlementState.PENDING_PAYMENT or not periods
        plan(
            None if pending else _moment(rng, periods, now),
            card,
            facility_code(kind, card.region_code),
            _bill(rng, kind),
            outcome,
        )
    # In time order, so that each citizen's deductible is used by the earlier bill first.
    return sorted(plans, key=lambda p: (p.at is None, p.at or now))


# --- Playing the plan through the services ----------------------------------------------------


def payable_cards() -> list[Card]:
    """Active linkages of active citizens whose card is active, in a fixed order."""
    rows = (
        WalletLinkage.objects.filter(
            state=LinkageState.ACTIVE,
            certificate__state=CertificateState.ACTIVE,
            citizen__status=CitizenStatus.ACTIVE,
        )
        .order_by("id")
        .values_list("id", "partner__code", "citizen_id", "citizen__region_id", "citizen__scheme")
    )
    return [Card(*row) for row in rows]


def _transaction_id(rng: random.Random, partner_code: str, paid_at: dt.datetime) -> str:
    """A wallet's own transaction number, in the shape each wallet uses (28 digits)."""
    day = paid_at.astimezone(SHANGHAI).strftime("%Y%m%d")
    if partner_code == "alipay":
        return f"{day}22001{rng.randrange(10**15):015d}"
    return f"42000{rng.randrange(10**4):04d}{day}{rng.randrange(10**11):011d}"


def _backdate(settlement: Settlement, at: dt.datetime, rng: random.Random) -> None:
    """Move a settlement just created to its planned moment: timestamp columns only (see the module
    docstring); the amounts are the service's."""
    issued = (at - dt.timedelta(seconds=rng.randint(5, 40))).replace(microsecond=0)
    Settlement.objects.filter(pk=settlement.pk).update(created_at=at, expires_at=at + PAYMENT_WINDOW)
    QrToken.objects.filter(pk=settlement.qr_token_id).update(
        issued_at=issued, expires_at=issued + qr.TOKEN_TTL, used_at=at
    )


def _fund_accounts(plans: list[SettlementPlan], rng: random.Random) -> int:
    """The yearly transfer into the personal account of each employee who pays from it."""
    actor = Actor.system("seed_demo")
    ids = sorted({p.card.citizen_id for p in plans if p.use_account})
    funded = 0
    for citizen in Citizen.objects.filter(pk__in=ids).order_by("pk"):
        balance = rng.randrange(300, 6000) * 100
        if ledger.account_balance_set(actor=actor, citizen=citizen, balance_fen=balance, note="个人账户年度划入"):
            funded += 1
    return funded


def play(plan: SettlementPlan, *, partner: Partner, now: dt.datetime, rng: random.Random) -> Settlement:
    """One planned settlement through the services, as the wallet's calls would make it."""
    actor = Actor.for_partner(partner.code)
    linkage = WalletLinkage(pk=plan.card.linkage_id)
    minted = qr.qr_token_mint(actor=actor, linkage=linkage)
    settlement = settlements.settlement_create(
        actor=actor,
        partner=partner,
        token=minted.token,
        facility_code=plan.facility_code,
        lines=plan.lines,
        use_personal_account=plan.use_account,
    )
    if plan.outcome == SettlementState.PENDING_PAYMENT or plan.at is None:
        return settlement
    at = plan.at
    _backdate(settlement, at, rng)
    if plan.outcome == SettlementState.EXPIRED and at + PAYMENT_WINDOW <= now:
        return (
            settlements.settlement_expire(
                actor=Actor.system("settlement expiry"), settlement=settlement, now=at + PAYMENT_WINDOW
            )
            or settlement
        )
    if plan.outcome in (SettlementState.EXPIRED, SettlementState.CANCELLED):
        return settlements.settlement_cancel(actor=actor, settlement=settlement, now=min(at + plan.confirm_after, now))
    paid_at = min(at + plan.confirm_after, now)
    settlement = settlements.settlement_confirm(
        actor=actor,
        settlement=settlement,
        partner_transaction_id=_transaction_id(rng, partner.code, paid_at),
        self_pay_fen=settlement.self_pay_fen,
        now=paid_at,
    )
    if plan.outcome == SettlementState.REFUNDED:
        settlement = settlements.settlement_refund(
            actor=actor, settlement=settlement, reason=plan.reason, now=min(paid_at + plan.refund_after, now)
        )
    return settlement


@dataclass
class SettlementSeedReport:
    by_state: Counter = field(default_factory=Counter)
    accounts_funded: int = 0
    risk_flags: int = 0


def seed_settlements(*, count: int, out: Output, now: dt.datetime | None = None) -> SettlementSeedReport | None:
    """Play the planned week of settlements and scan it for risks; None if done by an earlier run."""
    if AuditEvent.objects.filter(action=SETTLEMENTS_SEEDED_ACTION).exists():
        return None
    now = now or timezone.now()
    out(f"Seeding about {count} settlements over the last {DAYS} days ...")
    report = SettlementSeedReport()
    with transaction.atomic():
        plans = plan_settlements(count, payable_cards(), now=now)
        rng = random.Random(DEMO_SEED + 3)
        report.accounts_funded = _fund_accounts(plans, rng)
        partners = {p.code: p for p in Partner.objects.filter(code__in={p.card.partner_code for p in plans})}
        for plan in plans:
            settlement = play(plan, partner=partners[plan.card.partner_code], now=now, rng=rng)
            report.by_state[settlement.state] += 1
        today = now.astimezone(SHANGHAI).date()
        for back in range(DAYS):
            report.risk_flags += len(risk_scan_day(day=today - dt.timedelta(days=back)))
        audit_record(
            actor=Actor.system("seed_demo"),
            action=SETTLEMENTS_SEEDED_ACTION,
            object_type="demo",
            object_id="demo",
            after={"settlements": dict(report.by_state), "risk_flags": report.risk_flags},
        )
    return report
