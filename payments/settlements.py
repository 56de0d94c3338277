"""Settlements: a bill at a facility paid with an e-card (DESIGN.md section 4,
PARTNER_API.md "Settlement" and "Money rules in one place").

Every write is one transaction with its audit event and, where partners
hear it, its outbox event. Money is integer fen; the split is
`insurance.reimbursement.compute_split`, against the citizen-year
accumulator read under a row lock, so that concurrent settlements never
pass the deductible or the annual cap together.

Lock order, the same in every function here, so that none can deadlock
another: QR token, certificate, settlement, citizen-year accumulator,
personal account, audit chain head.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from insurance.catalogue import policy_in_force
from insurance.models import Certificate, CertificateState, Facility, ServiceItem
from insurance.reimbursement import BillLine, PolicyTerms, compute_split
from payments import ledger, qr
from payments.models import (
    BindingState,
    CitizenYearAccumulator,
    LinkageState,
    Partner,
    QrToken,
    Settlement,
    SettlementLine,
    SettlementState,
)
from payments.outbox import enqueue
from payments.representations import settlement_repr
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError

SHANGHAI = ZoneInfo("Asia/Shanghai")
PAYMENT_WINDOW = dt.timedelta(minutes=15)
MAX_LINES = 100


@dataclass(frozen=True)
class LineInput:
    service_code: str
    quantity: int
    unit_price_fen: int


def settlement_year(moment: dt.datetime) -> int:
    """The year a settlement belongs to: that of its creation in Asia/Shanghai."""
    return moment.astimezone(SHANGHAI).year


def _accumulator_for_update(citizen_id: int, year: int) -> CitizenYearAccumulator:
    CitizenYearAccumulator.objects.bulk_create([CitizenYearAccumulator(citizen_id=citizen_id, year=year)],
                                               ignore_conflicts=True)
    return CitizenYearAccumulator.objects.select_for_update().get(citizen_id=citizen_id, year=year)


def _audit_snapshot(settlement: Settlement) -> dict:
    """What the audit log keeps: amounts and states, no personal data."""
    return {
        "id": settlement.public_id,
        "partner": settlement.partner.code,
        "state": settlement.state,
        "year": settlement.year,
        "policy_version": settlement.policy.version,
        "total_fen": settlement.total_fen,
        "deductible_fen": settlement.deductible_fen,
        "fund_fen": settlement.fund_fen,
        "account_fen": settlement.account_fen,
        "self_pay_fen": settlement.self_pay_fen,
        "partner_transaction_id": settlement.partner_transaction_id,
        "version": settlement.version,
    }


def _not_active() -> DomainError:
    return DomainError("certificate_not_active", _("The e-card is not active."))


def _consume_token(token: str) -> QrToken:
    """The token's row, marked used by this transaction; 422 invalid/expired, 409 `token_used`."""
    row = qr.token_read(token)
    # The conditional UPDATE decides between concurrent uses of one token: one wins, the
    # others wait for it and then see `used_at` set. Rolled back with the settlement.
    taken = QrToken.objects.filter(pk=row.pk, used_at__isnull=True).update(used_at=timezone.now())
    if not taken:
        raise DomainError("token_used", _("This QR token was already used: ask for a new one."))
    return row


def _bill_lines(lines: Sequence[LineInput]) -> tuple[list[BillLine], list[ServiceItem]]:
    if not 1 <= len(lines) <= MAX_LINES:
        raise DomainError("validation_error", _("A settlement has 1 to 100 lines."), status=400, field="lines")
    items = {item.code: item for item in ServiceItem.objects.filter(code__in={line.service_code for line in lines})}
    bill: list[BillLine] = []
    services: list[ServiceItem] = []
    for index, line in enumerate(lines):
        item = items.get(line.service_code)
        if item is None or not item.active:
            raise DomainError("unknown_service", _("Line %(line)d: no insured service has this code.") % {"line": index + 1},
                              status=422, line=index + 1)
        bill.append(BillLine(category=item.category, quantity=line.quantity, unit_price_fen=line.unit_price_fen,
                             max_unit_price_fen=item.max_unit_price_fen, service_code=item.code))
        services.append(item)
    return bill, services


@transaction.atomic
def settlement_create(*, actor: Actor, partner: Partner, token: str, facility_code: str, lines: Sequence[LineInput],
                      use_personal_account: bool = False) -> Settlement:
    """Split a bill for the card a QR token carries, reserve the split, consume the token.

    Refusals, in this order: 422 `invalid_token` / `token_expired`, 409 `token_used`,
    409 `linkage_inactive`, 409 `binding_inactive`, 409 `certificate_not_active`,
    422 `unknown_facility`, 422 `unknown_service`, 422 `price_above_maximum`,
    409 `policy_unavailable`. Any refusal rolls everything back: the token stays unused.
    """
    row = _consume_token(token)
    # The card's own current state, under its row lock: a suspension committing now waits for us,
    # one committed before is seen.
    certificate = Certificate.objects.select_for_update().select_related("citizen").get(pk=row.certificate_id)
    linkage = row.linkage
    if linkage.state != LinkageState.ACTIVE:
        raise DomainError("linkage_inactive", _("The linkage that minted this token has ended."))
    binding = row.family_binding
    if binding is not None and binding.state != BindingState.ACTIVE:
        raise DomainError("binding_inactive", _("The family binding this token presents is not active."))
    if certificate.state != CertificateState.ACTIVE:
        raise _not_active()
    if binding is not None and not Certificate.objects.filter(pk=linkage.certificate_id,
                                                              state=CertificateState.ACTIVE).exists():
        raise _not_active()  # the holder's own card, as for minting
    citizen = certificate.citizen

    facility = Facility.objects.filter(code=facility_code, active=True).first()
    if facility is None:
        raise DomainError("unknown_facility", _("No active facility has this code."), status=422)
    bill, services = _bill_lines(lines)

    now = timezone.now()
    year = settlement_year(now)
    policy = policy_in_force(citizen.region_id, citizen.scheme, year, today=now.astimezone(SHANGHAI).date())
    # Prices are checked against the catalogue before the policy (compute_split checks them too).
    for index, line in enumerate(bill):
        if line.unit_price_fen > line.max_unit_price_fen:
            raise DomainError(
                "price_above_maximum",
                _("Line %(line)s (%(code)s): the unit price %(price)s fen is above the catalogue maximum %(max)s fen.")
                % {"line": index + 1, "code": line.service_code, "price": line.unit_price_fen,
                   "max": line.max_unit_price_fen},
                status=422, line=index + 1,
            )
    if policy is None:
        raise DomainError("policy_unavailable", _("No reimbursement policy is in force for this citizen's region and scheme."))

    accumulator = _accumulator_for_update(citizen.pk, year)
    account = ledger.account_for_update(citizen.pk)
    split = compute_split(
        lines=bill, policy=PolicyTerms.of(policy), deductible_used_fen=accumulator.deductible_used_fen,
        fund_used_fen=accumulator.fund_used_fen, account_balance_fen=ledger.available_fen(account),
        use_personal_account=use_personal_account,
    )
    settlement = Settlement.objects.create(
        partner=partner, certificate=certificate, citizen=citizen, family_binding=binding, qr_token=row,
        facility=facility, policy=policy, state=SettlementState.PENDING_PAYMENT, year=year,
        total_fen=split.total_fen, eligible_fen=split.eligible_fen, deductible_fen=split.deductible_fen,
        fund_fen=split.fund_fen, account_fen=split.account_fen, self_pay_fen=split.self_pay_fen,
        use_personal_account=use_personal_account, created_at=now, expires_at=now + PAYMENT_WINDOW,
    )
    SettlementLine.objects.bulk_create([
        SettlementLine(settlement=settlement, position=index + 1, service=item, service_code=item.code,
                       category=item.category, quantity=line.quantity, unit_price_fen=line.unit_price_fen,
                       line_total_fen=part.line_total_fen, eligible_fen=part.eligible_fen)
        for index, (line, item, part) in enumerate(zip(bill, services, split.lines, strict=True))
    ])
    accumulator.deductible_used_fen += split.deductible_fen
    accumulator.fund_used_fen += split.fund_fen
    accumulator.save(update_fields=["deductible_used_fen", "fund_used_fen", "updated_at"])
    ledger.account_hold(account, split.account_fen)
    audit_record(actor=actor, action="settlement.create", object_type="settlement", object_id=settlement.public_id,
                 region_code=citizen.region_id, after=_audit_snapshot(settlement))
    return settlement


def _locked(settlement: Settlement) -> Settlement:
    return (
        Settlement.objects.select_for_update(of=("self",))
        .select_related("partner", "policy", "certificate", "citizen", "facility", "family_binding")
        .get(pk=settlement.pk)
    )


def _release(settlement: Settlement) -> None:
    """Give back what a pending settlement reserved in its year and its account."""
    accumulator = _accumulator_for_update(settlement.citizen_id, settlement.year)
    accumulator.deductible_used_fen -= settlement.deductible_fen
    accumulator.fund_used_fen -= settlement.fund_fen
    accumulator.save(update_fields=["deductible_used_fen", "fund_used_fen", "updated_at"])
    account = ledger.account_for_update(settlement.citizen_id)
    ledger.account_release(account, settlement.account_fen)


def _change(settlement: Settlement, *, actor: Actor, action: str, event: str, before: dict, fields: list[str],
            reason: str = "") -> Settlement:
    settlement.version += 1
    settlement.save(update_fields=[*fields, "state", "version"])
    audit_record(actor=actor, action=f"settlement.{action}", object_type="settlement", object_id=settlement.public_id,
                 region_code=settlement.citizen.region_id,
                 before=before, after=_audit_snapshot(settlement), reason=reason)
    enqueue(partner=settlement.partner, type=event, obj=settlement_repr(settlement))
    return settlement


@transaction.atomic
def settlement_confirm(*, actor: Actor, settlement: Settlement, partner_transaction_id: str, self_pay_fen: int,
                       now: dt.datetime | None = None) -> Settlement:
    """The wallet collected the self-pay: `paid`, and the account hold becomes a debit.

    409 `settlement_expired` at or after `expires_at` (swept or not yet), 409
    `invalid_state` in any other state than `pending_payment`, 422 `amount_mismatch`.
    A card suspended since creation does not stop it (PARTNER_API.md).
    """
    settlement = _locked(settlement)
    now = now or timezone.now()
    if settlement.state == SettlementState.EXPIRED or (
        settlement.state == SettlementState.PENDING_PAYMENT and now >= settlement.expires_at
    ):
        raise DomainError("settlement_expired", _("This settlement expired before it was confirmed."))
    if settlement.state != SettlementState.PENDING_PAYMENT:
        raise DomainError("invalid_state", _("This settlement is %(state)s: it cannot be confirmed.")
                          % {"state": settlement.state})
    if self_pay_fen != settlement.self_pay_fen:
        raise DomainError("amount_mismatch", _("The self-pay collected differs from the settlement's self-pay."),
                          status=422, self_pay_fen=settlement.self_pay_fen)
    before = _audit_snapshot(settlement)
    account = ledger.account_for_update(settlement.citizen_id)
    ledger.account_debit_held(account, settlement=settlement, actor=actor)
    settlement.state = SettlementState.PAID
    settlement.partner_transaction_id = partner_transaction_id
    settlement.paid_at = now
    return _change(settlement, actor=actor, action="confirm", event="settlement.paid", before=before,
                   fields=["partner_transaction_id", "paid_at"])


@transaction.atomic
def settlement_cancel(*, actor: Actor, settlement: Settlement) -> Settlement:
    """A pending settlement abandoned by its partner: `cancelled`, its reservation released."""
    settlement = _locked(settlement)
    if settlement.state != SettlementState.PENDING_PAYMENT:
        raise DomainError("invalid_state", _("This settlement is %(state)s: it cannot be cancelled.")
                          % {"state": settlement.state})
    before = _audit_snapshot(settlement)
    _release(settlement)
    settlement.state = SettlementState.CANCELLED
    settlement.released_at = timezone.now()
    return _change(settlement, actor=actor, action="cancel", event="settlement.cancelled", before=before,
                   fields=["released_at"])


@transaction.atomic
def settlement_expire(*, actor: Actor, settlement: Settlement, now: dt.datetime | None = None) -> Settlement | None:
    """A pending settlement past `expires_at`: `expired`, its reservation released (None if not due)."""
    now = now or timezone.now()
    settlement = (
        Settlement.objects.select_for_update(of=("self",), skip_locked=True)
        .select_related("partner", "policy", "certificate", "citizen", "facility", "family_binding")
        .filter(pk=settlement.pk, state=SettlementState.PENDING_PAYMENT, expires_at__lte=now)
        .first()
    )
    if settlement is None:  # confirmed, cancelled or being handled by someone else
        return None
    before = _audit_snapshot(settlement)
    _release(settlement)
    settlement.state = SettlementState.EXPIRED
    settlement.released_at = now
    return _change(settlement, actor=actor, action="expire", event="settlement.expired", before=before,
                   fields=["released_at"])


def settlements_expire_due(*, now: dt.datetime | None = None, batch: int = 500) -> int:
    """Expire every pending settlement past `expires_at` (beat runs it every minute); returns how many."""
    now = now or timezone.now()
    actor = Actor.system("settlement expiry")
    done = 0
    while True:
        due = list(Settlement.objects.filter(state=SettlementState.PENDING_PAYMENT, expires_at__lte=now)
                   .order_by("expires_at", "id").values_list("pk", flat=True)[:batch])
        expired = 0
        for pk in due:
            if settlement_expire(actor=actor, settlement=Settlement(pk=pk), now=now) is not None:
                expired += 1
        done += expired
        if len(due) < batch or expired == 0:
            return done


@transaction.atomic
def settlement_refund(*, actor: Actor, settlement: Settlement, reason: str) -> Settlement:
    """Full refund of a paid settlement: its year's fund and deductible use and the account
    balance are restored exactly (whatever the card's state now)."""
    settlement = _locked(settlement)
    if settlement.state != SettlementState.PAID:
        raise DomainError("invalid_state", _("This settlement is %(state)s: only a paid settlement can be refunded.")
                          % {"state": settlement.state})
    before = _audit_snapshot(settlement)
    accumulator = _accumulator_for_update(settlement.citizen_id, settlement.year)
    accumulator.deductible_used_fen -= settlement.deductible_fen
    accumulator.fund_used_fen -= settlement.fund_fen
    accumulator.save(update_fields=["deductible_used_fen", "fund_used_fen", "updated_at"])
    account = ledger.account_for_update(settlement.citizen_id)
    ledger.account_credit_refund(account, settlement=settlement, actor=actor)
    settlement.state = SettlementState.REFUNDED
    settlement.refunded_at = timezone.now()
    settlement.refund_reason = reason[:128]
    return _change(settlement, actor=actor, action="refund", event="settlement.refunded", before=before,
                   fields=["refunded_at", "refund_reason"], reason=reason)


# --- Selectors ---------------------------------------------------------------------------------


def settlements_of_partner(partner: Partner) -> QuerySet[Settlement]:
    """A partner's own settlements, with what their representation reads (a fixed number of queries)."""
    return (
        Settlement.objects.filter(partner=partner)
        .select_related("certificate", "family_binding", "facility", "policy")
        .prefetch_related("lines")
    )
