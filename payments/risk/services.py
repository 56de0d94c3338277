"""Risk review: rules that flag unusual settlement patterns for a region administrator.

Flags are raised by a periodic scan (`risk_scan_day`, run by Celery beat every
few minutes for today and yesterday), not inside `settlement_create`:

- the settlement transaction is the partner's hot path and holds the card,
  accumulator and account row locks; aggregating 30 days of history there
  would lengthen those locks, and a rule bug would refuse a patient's bill;
- two of the three rules are aggregates over a window (a day, 30 days) that
  a single settlement does not complete, and a rescan after a rule change
  re-evaluates past days the same way;
- review is by people: a flag a few minutes after the fact is soon enough.

Idempotency: one flag per rule, subject and day (Asia/Shanghai), enforced by a
unique constraint; a rescan adds nothing and writes no audit event.

Rules count settlements that took money or may still take it: pending, paid and
refunded (a refunded bill was still presented); cancelled and expired ones do not.

Thresholds come from `settings.ECARD_RISK_RULES` (a dict overriding `RISK_DEFAULTS`).
"""

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from payments.models import FamilyBinding, RiskFlag, RiskFlagState, RiskRule, Settlement, SettlementState
from payments.risk.errors import RiskErrorCode
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError

SHANGHAI = ZoneInfo("Asia/Shanghai")

RISK_DEFAULTS: dict[str, int] = {
    # One e-card settled at MORE than this many distinct facilities in one day.
    "max_facilities_per_day": 3,
    # One settlement whose total is MORE than this (fen): 5,000.00 yuan.
    "large_settlement_fen": 500_000,
    # A binding's tokens settled MORE than `binding_ratio` times as often as the holder's own card
    # over `binding_window_days`, with at least `binding_min_count` binding settlements.
    "binding_ratio": 3,
    "binding_window_days": 30,
    "binding_min_count": 10,
}

COUNTED_STATES = (SettlementState.PENDING_PAYMENT, SettlementState.PAID, SettlementState.REFUNDED)
DECISIONS = {"dismiss": RiskFlagState.DISMISSED, "confirm": RiskFlagState.CONFIRMED}


def risk_settings() -> dict[str, int]:
    configured = getattr(settings, "ECARD_RISK_RULES", {}) or {}
    unknown = set(configured) - set(RISK_DEFAULTS)
    if unknown:
        raise ValueError(f"ECARD_RISK_RULES has unknown keys: {sorted(unknown)}")
    values = {**RISK_DEFAULTS, **configured}
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"ECARD_RISK_RULES[{key!r}] must be a non-negative integer")
    return values


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The day's start and the next day's start, in Asia/Shanghai."""
    start = dt.datetime.combine(day, dt.time.min, tzinfo=SHANGHAI)
    return start, start + dt.timedelta(days=1)


@dataclass(frozen=True)
class Finding:
    rule: str
    subject_type: str
    subject_id: str
    region_code: str
    citizen_id: int | None
    evidence: dict


def _counted() -> QuerySet[Settlement]:
    return Settlement.objects.filter(state__in=COUNTED_STATES)


def find_facilities_per_day(day: dt.date, limits: dict[str, int]) -> list[Finding]:
    start, end = day_bounds(day)
    of_day = _counted().filter(created_at__gte=start, created_at__lt=end)
    busy = (
        of_day.values("certificate_id")
        .annotate(n=Count("facility_id", distinct=True))
        .filter(n__gt=limits["max_facilities_per_day"])
        .values_list("certificate_id", flat=True)
    )
    findings = []
    for certificate_id in busy:
        rows = list(
            of_day.filter(certificate_id=certificate_id)
            .select_related("facility", "certificate", "citizen")
            .order_by("created_at", "id")
        )
        first = rows[0]
        facilities = sorted({row.facility.code for row in rows})
        findings.append(
            Finding(
                rule=RiskRule.FACILITIES_PER_DAY,
                subject_type="certificate",
                subject_id=first.certificate.number,
                region_code=first.citizen.region_id,
                citizen_id=first.citizen_id,
                evidence={
                    "facilities": facilities,
                    "facility_count": len(facilities),
                    "limit": limits["max_facilities_per_day"],
                    "settlements": [row.public_id for row in rows],
                },
            )
        )
    return findings


def find_large_settlements(day: dt.date, limits: dict[str, int]) -> list[Finding]:
    start, end = day_bounds(day)
    rows = (
        _counted()
        .filter(created_at__gte=start, created_at__lt=end, total_fen__gt=limits["large_settlement_fen"])
        .select_related("citizen", "facility")
        .order_by("created_at", "id")
    )
    return [
        Finding(
            rule=RiskRule.LARGE_SETTLEMENT,
            subject_type="settlement",
            subject_id=row.public_id,
            region_code=row.citizen.region_id,
            citizen_id=row.citizen_id,
            evidence={
                "settlements": [row.public_id],
                "total_fen": row.total_fen,
                "threshold_fen": limits["large_settlement_fen"],
                "facility": row.facility.code,
            },
        )
        for row in rows
    ]


def find_binding_overuse(day: dt.date, limits: dict[str, int]) -> list[Finding]:
    """Window: the `binding_window_days` days ending with `day` (inclusive)."""
    _, end = day_bounds(day)
    start = end - dt.timedelta(days=limits["binding_window_days"])
    in_window = _counted().filter(created_at__gte=start, created_at__lt=end)
    counts = dict(
        in_window.filter(family_binding__isnull=False)
        .values("family_binding_id")
        .annotate(n=Count("id"))
        .filter(n__gte=max(1, limits["binding_min_count"]))
        .values_list("family_binding_id", "n")
    )
    findings = []
    bindings = FamilyBinding.objects.filter(pk__in=counts).select_related("beneficiary", "holder_linkage")
    for binding in bindings.order_by("id"):
        used = counts[binding.pk]
        own = in_window.filter(citizen_id=binding.holder_citizen_id, family_binding__isnull=True).count()
        if used <= limits["binding_ratio"] * own:
            continue
        findings.append(
            Finding(
                rule=RiskRule.BINDING_OVERUSE,
                subject_type="family_binding",
                subject_id=binding.public_id,
                region_code=binding.beneficiary.region_id,
                citizen_id=binding.beneficiary_id,
                evidence={
                    "binding_settlements": used,
                    "holder_own_settlements": own,
                    "ratio": limits["binding_ratio"],
                    "min_count": limits["binding_min_count"],
                    "window_days": limits["binding_window_days"],
                    "window_start": start.date().isoformat(),
                    "window_end": day.isoformat(),
                    "settlements": list(
                        in_window.filter(family_binding=binding)
                        .order_by("-created_at", "-id")
                        .values_list("public_id", flat=True)[:20]
                    ),
                },
            )
        )
    return findings


def risk_flag_raise(*, actor: Actor, finding: Finding, day: dt.date) -> RiskFlag | None:
    """Record a finding as a flag, once per rule, subject and day; None if it was already flagged."""
    with transaction.atomic():
        if RiskFlag.objects.filter(
            rule=finding.rule, subject_type=finding.subject_type, subject_id=finding.subject_id, day=day
        ).exists():
            return None
        try:
            with transaction.atomic():  # a concurrent scan may insert the same flag first
                flag = RiskFlag.objects.create(
                    rule=finding.rule,
                    subject_type=finding.subject_type,
                    subject_id=finding.subject_id,
                    day=day,
                    region_id=finding.region_code,
                    citizen_id=finding.citizen_id,
                    evidence=finding.evidence,
                    created_at=timezone.now(),
                )
        except IntegrityError:
            return None
        audit_record(
            actor=actor,
            action="risk_flag.raise",
            object_type="risk_flag",
            object_id=flag.pk,
            region_code=finding.region_code,
            after={
                "rule": flag.rule,
                "subject_type": flag.subject_type,
                "subject_id": flag.subject_id,
                "day": day.isoformat(),
                "evidence": flag.evidence,
            },
        )
        return flag


def risk_scan_day(*, day: dt.date, actor: Actor | None = None) -> list[RiskFlag]:
    """Run every rule for one Asia/Shanghai day; returns the flags newly raised."""
    actor = actor or Actor.system("risk scan")
    limits = risk_settings()
    raised = []
    for finder in (find_facilities_per_day, find_large_settlements, find_binding_overuse):
        for finding in finder(day, limits):
            flag = risk_flag_raise(actor=actor, finding=finding, day=day)
            if flag is not None:
                raised.append(flag)
    return raised


def risk_scan_recent(*, now: dt.datetime | None = None) -> int:
    """Today and yesterday (settlements made just before midnight are seen by the next run)."""
    today = (now or timezone.now()).astimezone(SHANGHAI).date()
    return sum(len(risk_scan_day(day=day)) for day in (today - dt.timedelta(days=1), today))


@transaction.atomic
def risk_flag_decide(*, actor: Actor, flag: RiskFlag, decision: str, note: str) -> RiskFlag:
    """Dismiss or confirm an open flag with a note; audited. 409 `invalid_state` if already decided."""
    if decision not in DECISIONS:
        raise DomainError(RiskErrorCode.VALIDATION_ERROR, _("Choose dismiss or confirm."), status=400, field="decision")
    note = note.strip()
    if not note:
        raise DomainError(RiskErrorCode.VALIDATION_ERROR, _("A note is required."), status=400, field="note")
    flag = RiskFlag.objects.select_for_update().get(pk=flag.pk)
    if flag.state != RiskFlagState.OPEN:
        raise DomainError(RiskErrorCode.INVALID_STATE, _("This flag has already been decided."))
    before = {"state": flag.state}
    flag.state = DECISIONS[decision]
    flag.decided_by = actor.label[:150]
    flag.decided_at = timezone.now()
    flag.decision_note = note[:256]
    flag.save(update_fields=["state", "decided_by", "decided_at", "decision_note"])
    audit_record(
        actor=actor,
        action=f"risk_flag.{decision}",
        object_type="risk_flag",
        object_id=flag.pk,
        region_code=flag.region_id,
        before=before,
        after={"state": flag.state, "rule": flag.rule, "subject_id": flag.subject_id},
        reason=flag.decision_note,
    )
    return flag
