"""What the dashboard shows, read from the rollups only (a fixed handful of small queries).

Nothing here reads citizens, e-cards or settlements: those tables grow without
bound, the rollups do not (backoffice/dashboards/rollups.py keeps them).
"""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum

from backoffice.dashboards.rollups import month_key
from insurance.models import CertificateState, CitizenStatus
from payments.models import BindingState, OutboxEvent, OutboxState, Partner
from portal.models import Region, RollupCount, RollupDaily

TREND_DAYS = 90
CARD_STATES = [s.value for s in CertificateState]
BINDING_STATES = [s.value for s in BindingState]
FLOW_METRICS = ["settled", "fund_fen", "total_fen", "refunded", "refund_fund_fen", "refund_total_fen"]
TREND_METRICS = ["cards_issued", "cards_activated", "settled", "fund_fen", "refund_fund_fen"]


def yuan(fen: int) -> Decimal:
    """Integer fen as yuan, exact (templates format it for the language)."""
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _add_counts(mine: dict, theirs: dict) -> None:
    for key, value in theirs.items():
        mine[key] = mine.get(key, 0) + value


@dataclass
class Period:
    settled: int = 0
    refunded: int = 0
    fund_fen: int = 0
    total_fen: int = 0

    @property
    def fund_yuan(self) -> Decimal:
        return yuan(self.fund_fen)

    @property
    def total_yuan(self) -> Decimal:
        return yuan(self.total_fen)


@dataclass
class Figures:
    """One region's figures, or the sum of several."""

    code: str = ""
    name: str = ""
    citizens: dict[str, int] = field(default_factory=dict)
    cards: dict[str, int] = field(default_factory=dict)
    linkages: dict[int, int] = field(default_factory=dict)
    bindings: dict[str, int] = field(default_factory=dict)
    aged_60: int = 0
    aged_80: int = 0
    today: Period = field(default_factory=Period)
    month: Period = field(default_factory=Period)
    year: Period = field(default_factory=Period)

    @property
    def active_citizens(self) -> int:
        return self.citizens.get(CitizenStatus.ACTIVE.value, 0)

    @property
    def live_cards(self) -> int:
        return sum(self.cards.get(s, 0) for s in ("pending_activation", "active", "suspended"))

    @property
    def activation_rate(self) -> Decimal | None:
        """Share of live e-cards that have been activated in a wallet (active or suspended)."""
        live = self.live_cards
        if not live:
            return None
        activated = self.cards.get("active", 0) + self.cards.get("suspended", 0)
        return (Decimal(activated) * 100 / live).quantize(Decimal("0.1"))

    @property
    def total_linkages(self) -> int:
        return sum(self.linkages.values())

    def add(self, other: "Figures") -> None:
        for mine, theirs in (
            (self.citizens, other.citizens),
            (self.cards, other.cards),
            (self.linkages, other.linkages),
            (self.bindings, other.bindings),
        ):
            _add_counts(mine, theirs)
        self.aged_60 += other.aged_60
        self.aged_80 += other.aged_80
        for name in ("today", "month", "year"):
            a, b = getattr(self, name), getattr(other, name)
            a.settled += b.settled
            a.refunded += b.refunded
            a.fund_fen += b.fund_fen
            a.total_fen += b.total_fen


@dataclass
class PartnerHealth:
    code: str
    name: str
    linkages: int = 0
    pending: int = 0
    failing: int = 0
    dead: int = 0
    paused: bool = False


@dataclass
class Dashboard:
    today: dt.date
    regions: list[Figures]
    total: Figures
    partners: list[PartnerHealth]
    days: list[dt.date]
    trends: dict[str, list[int]]
    updated_at: dt.datetime | None = None


def dashboard_for(regions: list[Region], *, today: dt.date) -> Dashboard:
    codes = [r.code for r in regions]
    figures = {r.code: Figures(code=r.code, name=r.display_name) for r in regions}

    for region, metric, dim, value in (
        RollupCount.objects.filter(region_code__in=codes)
        .exclude(metric="cohort")
        .values_list("region_code", "metric", "dim", "value")
    ):
        target = figures[region]
        if metric == "citizens":
            target.citizens[dim] = value
        elif metric == "cards":
            target.cards[dim] = value
        elif metric == "linkages":
            target.linkages[int(dim)] = value
        elif metric == "bindings":
            target.bindings[dim] = value

    # Ages move with the date: sum the birth-month buckets up to the month 60 (80) years ago.
    cut_60, cut_80 = month_key(years_before(today, 60)), month_key(years_before(today, 80))
    for row in (
        RollupCount.objects.filter(region_code__in=codes, metric="cohort")
        .values("region_code")
        .annotate(aged_60=Sum("value", filter=Q(dim__lte=cut_60)), aged_80=Sum("value", filter=Q(dim__lte=cut_80)))
    ):
        figures[row["region_code"]].aged_60 = row["aged_60"] or 0
        figures[row["region_code"]].aged_80 = row["aged_80"] or 0

    year_start, month_start = today.replace(month=1, day=1), today.replace(day=1)
    for row in (
        RollupDaily.objects.filter(region_code__in=codes, metric__in=FLOW_METRICS, day__gte=year_start, day__lte=today)
        .values("region_code", "metric")
        .annotate(
            on_day=Sum("value", filter=Q(day=today)),
            in_month=Sum("value", filter=Q(day__gte=month_start)),
            in_year=Sum("value"),
        )
    ):
        target = figures[row["region_code"]]
        for period, key in ((target.today, "on_day"), (target.month, "in_month"), (target.year, "in_year")):
            _add_flow(period, row["metric"], row[key] or 0)

    first_day = today - dt.timedelta(days=TREND_DAYS - 1)
    days = [first_day + dt.timedelta(days=i) for i in range(TREND_DAYS)]
    index = {day: i for i, day in enumerate(days)}
    trends: dict[str, list[int]] = {metric: [0] * TREND_DAYS for metric in TREND_METRICS}
    for day, metric, value in (
        RollupDaily.objects.filter(region_code__in=codes, metric__in=TREND_METRICS, day__gte=first_day, day__lte=today)
        .values("day", "metric")
        .annotate(v=Sum("value"))
        .values_list("day", "metric", "v")
    ):
        trends[metric][index[day]] = value or 0
    trends["fund_net_fen"] = [a - b for a, b in zip(trends["fund_fen"], trends["refund_fund_fen"], strict=True)]

    total = Figures(code="", name="")
    for item in figures.values():
        total.add(item)
    return Dashboard(
        today=today,
        regions=list(figures.values()),
        total=total,
        partners=_partner_health(total),
        days=days,
        trends=trends,
    )


def _add_flow(period: Period, metric: str, value: int) -> None:
    if metric == "settled":
        period.settled += value
    elif metric == "refunded":
        period.refunded += value
    elif metric == "fund_fen":
        period.fund_fen += value
    elif metric == "refund_fund_fen":
        period.fund_fen -= value
    elif metric == "total_fen":
        period.total_fen += value
    elif metric == "refund_total_fen":
        period.total_fen -= value


def _partner_health(total: Figures) -> list[PartnerHealth]:
    """Delivery health from the outbox's (partner, state) index: only undelivered rows are counted."""
    partners = {
        pk: PartnerHealth(code=code, name=name, linkages=total.linkages.get(pk, 0), paused=paused)
        for pk, code, name, paused in Partner.objects.order_by("code").values_list(
            "id", "code", "name", "deliveries_paused"
        )
    }
    counts: defaultdict[int, dict[str, Any]] = defaultdict(dict)
    # Naming the partners lets PostgreSQL use the (partner, state, id) index instead of scanning delivered rows.
    for row in (
        OutboxEvent.objects.filter(partner_id__in=list(partners), state__in=[OutboxState.PENDING, OutboxState.DEAD])
        .values("partner_id")
        .annotate(
            # Disjoint, as the delivery monitor counts them: pending is not yet tried.
            pending=Count("id", filter=Q(state=OutboxState.PENDING, attempts=0)),
            failing=Count("id", filter=Q(state=OutboxState.PENDING, attempts__gt=0)),
            dead=Count("id", filter=Q(state=OutboxState.DEAD)),
        )
    ):
        counts[row["partner_id"]] = row
    for pk, health in partners.items():
        row = counts.get(pk, {})
        health.pending, health.failing, health.dead = row.get("pending", 0), row.get("failing", 0), row.get("dead", 0)
    return list(partners.values())
