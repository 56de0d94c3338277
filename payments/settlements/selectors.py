"""Scoped reads: the settlement and risk-review screens', and the partner API's own settlements.

A settlement's region is its citizen's insured region; a risk flag carries its
region. Everything starts from `portal.scope`, so another region's object is
simply not in the queryset and its screen answers 404.
"""

import datetime as dt
from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet, Sum

from insurance.catalogue import policy_in_force, shanghai_today
from insurance.models import Citizen, ReimbursementPolicy
from payments.models import AccountEntry, CitizenYearAccumulator, Partner, PersonalAccount, Settlement
from payments.risk.services import day_bounds
from payments.rows import loaded
from payments.settlements import store
from portal.models import AuditEvent
from portal.scope import restrict_to_user_regions

SETTLEMENT_SORTS = {
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
    "-total": ("-total_fen", "-id"),
    "total": ("total_fen", "id"),
}


def settlements_visible_to(user) -> QuerySet[Settlement]:
    return restrict_to_user_regions(Settlement.objects.all(), user, region_field="citizen__region")


@dataclass(frozen=True)
class SettlementQuery:
    facility: str = ""
    partner: str = ""
    state: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    amount_min_fen: int | None = None
    amount_max_fen: int | None = None
    sort: str = "-created"


def settlement_list(user, query: SettlementQuery) -> QuerySet[Settlement]:
    """The list's rows: filtered on the server, with what a row shows in one query."""
    rows = settlements_visible_to(user).select_related("citizen", "facility", "partner")
    if query.facility:
        rows = rows.filter(facility__code=query.facility)
    if query.partner:
        rows = rows.filter(partner__code=query.partner)
    if query.state:
        rows = rows.filter(state=query.state)
    if query.date_from:
        rows = rows.filter(created_at__gte=day_bounds(query.date_from)[0])
    if query.date_to:
        rows = rows.filter(created_at__lt=day_bounds(query.date_to)[1])
    if query.amount_min_fen is not None:
        rows = rows.filter(total_fen__gte=query.amount_min_fen)
    if query.amount_max_fen is not None:
        rows = rows.filter(total_fen__lte=query.amount_max_fen)
    return rows.order_by(*SETTLEMENT_SORTS.get(query.sort, SETTLEMENT_SORTS["-created"]))


def settlement_detail(user, public_id: str) -> Settlement:
    """Raises Settlement.DoesNotExist outside the user's regions."""
    return (
        settlements_visible_to(user)
        .select_related("citizen", "citizen__region", "facility", "partner", "policy", "certificate", "family_binding")
        .prefetch_related("lines__service")
        .get(public_id=public_id)
    )


def settlement_history(settlement: Settlement) -> list[dict]:
    """The state changes, oldest first, from the settlement's timestamps and its audit events."""
    events = list(
        AuditEvent.objects.filter(object_type="settlement", object_id=settlement.public_id)
        .order_by("seq")
        .only("created_at", "action", "actor_label", "reason", "after")
    )
    if events:
        return [
            {
                "at": e.created_at,
                "state": (e.after or {}).get("state", ""),
                "action": e.action,
                "by": e.actor_label,
                "reason": e.reason,
            }
            for e in events
        ]
    history = [
        {"at": settlement.created_at, "state": "pending_payment", "action": "settlement.create", "by": "", "reason": ""}
    ]
    for at, state in (
        (settlement.paid_at, "paid"),
        (settlement.released_at, settlement.state),
        (settlement.refunded_at, "refunded"),
    ):
        if at:
            history.append({"at": at, "state": state, "action": "", "by": "", "reason": ""})
    return history


@dataclass(frozen=True)
class YearUsage:
    year: int
    policy: ReimbursementPolicy | None
    deductible_used_fen: int
    fund_used_fen: int
    deductible_fen: int | None
    cap_fen: int | None
    cap_left_fen: int | None
    deductible_left_fen: int | None


def citizen_year_usage(citizen: Citizen, year: int | None = None) -> YearUsage:
    """The year's deductible and fund use (pending settlements included) against the policy in force."""
    today = shanghai_today()
    year = year or today.year
    row = CitizenYearAccumulator.objects.filter(citizen=citizen, year=year).first()
    deductible_used = row.deductible_used_fen if row else 0
    fund_used = row.fund_used_fen if row else 0
    policy = policy_in_force(citizen.region_id, citizen.scheme, year, today=today)
    return YearUsage(
        year=year,
        policy=policy,
        deductible_used_fen=deductible_used,
        fund_used_fen=fund_used,
        deductible_fen=policy.deductible_fen if policy else None,
        cap_fen=policy.annual_cap_fen if policy else None,
        cap_left_fen=max(0, policy.annual_cap_fen - fund_used) if policy else None,
        deductible_left_fen=max(0, policy.deductible_fen - deductible_used) if policy else None,
    )


@dataclass(frozen=True)
class AccountView:
    balance_fen: int  # the sum of the ledger's entries
    held_fen: int
    entries: Page


def citizen_account(citizen: Citizen, page_number: str | int | None, per_page: int = 10) -> AccountView:
    account = PersonalAccount.objects.filter(citizen=citizen).first()
    entries = (
        AccountEntry.objects.filter(account=account).select_related("settlement").order_by("-id")
        if account
        else AccountEntry.objects.none()
    )
    balance = (
        (AccountEntry.objects.filter(account=account).aggregate(total=Sum("amount_fen"))["total"] or 0)
        if account
        else 0
    )
    return AccountView(
        balance_fen=balance,
        held_fen=account.held_fen if account else 0,
        entries=Paginator(entries, per_page).get_page(page_number),
    )


# --- The partner API's reads ---------------------------------------------------------------------


def settlement_owned(partner: Partner, public_id: str) -> Settlement | None:
    """A bare handle (its pk) on this partner's settlement, for a write whose service locks and
    reads the row itself; None if the partner has no such settlement (another's included)."""
    found = store.settlement_owned(public_id)
    if found is None or found[1] != partner.pk:
        return None
    return loaded(Settlement, ["id", "partner_id", "public_id"], [found[0], partner.pk, public_id])


def settlements_of_partner(partner: Partner) -> QuerySet[Settlement]:
    """A partner's own settlements, with what their representation reads (a fixed number of queries)."""
    return (
        Settlement.objects.filter(partner=partner)
        .select_related("certificate", "family_binding", "facility", "policy")
        .prefetch_related("lines")
    )
