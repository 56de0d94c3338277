"""Settlement actions: create, confirm, cancel, expire, refund (DESIGN.md section 4, PARTNER_API.md
"Settlement" and "Money rules in one place").

Each action is one transaction with its audit event and, where partners hear it, its outbox
event; it locks what it changes itself, through payments/settlements/store.py (the only module
here with SQL, and the lock order). Money is integer fen; the split is
`insurance.reimbursement.compute_split`, against the citizen-year accumulator read under its row
lock, so that concurrent settlements never pass the deductible or the annual cap together.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from insurance.models import CertificateState, ServiceItem
from insurance.reimbursement import BillLine, PolicyTerms, compute_split
from payments.api.idempotency import Claim
from payments.api.representations import settlement_repr
from payments.delivery.outbox import enqueued, outbox_event
from payments.ledger import services as ledger
from payments.models import (
    BindingState,
    LinkageState,
    Partner,
    PersonalAccount,
    Settlement,
    SettlementLine,
    SettlementState,
)
from payments.settlements import store
from payments.settlements.errors import SettlementErrorCode
from payments.tokens import services as qr
from portal.actors import Actor
from portal.audit import audit_event
from portal.errors import DomainError

SHANGHAI = ZoneInfo("Asia/Shanghai")
PAYMENT_WINDOW = dt.timedelta(minutes=15)
MAX_LINES = 100


@dataclass(frozen=True)
class LineInput:
    service_code: str
    quantity: int
    unit_price_fen: int


def _transaction(claim: Claim | None) -> transaction.Atomic:
    """The action's transaction. With an idempotency claim the action runs inside `run_idempotent`'s
    transaction, which is rolled back whole on any error (payments/api/idempotency.py): it joins it
    without a savepoint of its own, a SAVEPOINT and a RELEASE less per request. Anywhere else (the
    screens, tasks, tests) it is `transaction.atomic()`, nested or not."""
    return transaction.atomic(savepoint=claim is None)


def settlement_year(moment: dt.datetime) -> int:
    """The year a settlement belongs to: that of its creation in Asia/Shanghai."""
    return moment.astimezone(SHANGHAI).year


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
    return DomainError(SettlementErrorCode.CERTIFICATE_NOT_ACTIVE, _("The e-card is not active."))


def _invalid_state(settlement: Settlement, message: str | Promise) -> DomainError:
    return DomainError(SettlementErrorCode.INVALID_STATE, message % {"state": settlement.state})


def _check_token(claims: dict, found: store.CreateContext | None) -> store.CreateContext:
    """The token's refusals in the documented order: 422 invalid/expired, 409 `token_used`, linkage,
    binding, card."""
    qr.token_check_row(
        claims,
        found=found is not None,
        certificate_number=None if found is None else found.certificate.number,
        linkage_public_id=None if found is None else found.linkage_public_id,
        binding_public_id=None if found is None or found.binding is None else found.binding.public_id,
        expires_at=None if found is None else found.token.expires_at,
    )
    found = cast(store.CreateContext, found)  # token_check_row refused a token not found
    if not found.taken:
        raise DomainError(SettlementErrorCode.TOKEN_USED, _("This QR token was already used: ask for a new one."))
    if found.linkage_state != LinkageState.ACTIVE:
        raise DomainError(SettlementErrorCode.LINKAGE_INACTIVE, _("The linkage that minted this token has ended."))
    if found.binding is not None and found.binding.state != BindingState.ACTIVE:
        raise DomainError(
            SettlementErrorCode.BINDING_INACTIVE, _("The family binding this token presents is not active.")
        )
    if found.certificate.state != CertificateState.ACTIVE:
        raise _not_active()
    if found.binding is not None and found.holder_certificate_state != CertificateState.ACTIVE:
        raise _not_active()  # the holder's own card, as for minting
    return found


def _bill_lines(lines: Sequence[LineInput], items: dict[str, ServiceItem]) -> tuple[list[BillLine], list[ServiceItem]]:
    """The bill against the catalogue: 422 `unknown_service`, then (before the policy is looked at)
    422 `price_above_maximum`."""
    bill: list[BillLine] = []
    services: list[ServiceItem] = []
    for index, line in enumerate(lines):
        item = items.get(line.service_code)
        if item is None or not item.active:
            raise DomainError(
                SettlementErrorCode.UNKNOWN_SERVICE,
                _("Line %(line)d: no insured service has this code.") % {"line": index + 1},
                status=422,
                line=index,  # 0-based, as in the `lines[0]` paths (PARTNER_API.md "Details")
            )
        bill.append(
            BillLine(
                category=item.category,
                quantity=line.quantity,
                unit_price_fen=line.unit_price_fen,
                max_unit_price_fen=item.max_unit_price_fen,
                service_code=item.code,
            )
        )
        services.append(item)
    for index, bill_line in enumerate(bill):
        if bill_line.unit_price_fen > bill_line.max_unit_price_fen:
            raise DomainError(
                SettlementErrorCode.PRICE_ABOVE_MAXIMUM,
                _("Line %(line)s (%(code)s): the unit price %(price)s fen is above the catalogue maximum %(max)s fen.")
                % {
                    "line": index + 1,
                    "code": bill_line.service_code,
                    "price": bill_line.unit_price_fen,
                    "max": bill_line.max_unit_price_fen,
                },
                status=422,
                line=index,  # 0-based, as in the `lines[0]` paths (PARTNER_API.md "Details")
            )
    return bill, services


def settlement_create(
    *,
    actor: Actor,
    partner: Partner,
    token: str,
    facility_code: str,
    lines: Sequence[LineInput],
    use_personal_account: bool = False,
    claim: Claim | None = None,
) -> Settlement:
    """Split a bill for the card a QR token carries, reserve the split, consume the token.

    Refusals, in this order: 422 `invalid_token` / `token_expired`, 409 `token_used`,
    409 `linkage_inactive`, 409 `binding_inactive`, 409 `certificate_not_active`,
    422 `unknown_facility`, 422 `unknown_service`, 422 `price_above_maximum`,
    409 `policy_unavailable`. Any refusal rolls everything back: the token stays unused.
    `claim`: the API request's idempotency claim, carried by the first statement.
    """
    now = timezone.now()
    year = settlement_year(now)
    claims = qr.token_claims(token)
    with _transaction(claim):
        found = store.create_context(
            jti=claims["jti"],
            now=now,
            facility_code=facility_code,
            codes=sorted({line.service_code for line in lines}),
            year=year,
            today=now.astimezone(SHANGHAI).date(),
            claim=claim,
        )
        read = _check_token(claims, found)
        if read.facility is None:
            raise DomainError(SettlementErrorCode.UNKNOWN_FACILITY, _("No active facility has this code."), status=422)
        if not 1 <= len(lines) <= MAX_LINES:
            raise DomainError(
                SettlementErrorCode.VALIDATION_ERROR, _("A settlement has 1 to 100 lines."), status=400, field="lines"
            )
        bill, services = _bill_lines(lines, read.items)
        if read.policy is None:
            raise DomainError(
                SettlementErrorCode.POLICY_UNAVAILABLE,
                _("No reimbursement policy is in force for this citizen's region and scheme."),
            )

        # Locked by the read, else created and locked now (the same order: year, then account).
        citizen = read.citizen
        if read.accumulator is not None and read.account is not None:
            accumulator, account = read.accumulator, read.account
        else:
            accumulator = store.accumulator_for_update(citizen.pk, year)
            account = ledger.account_for_update(citizen.pk)
        split = compute_split(
            lines=bill,
            policy=PolicyTerms.of(read.policy),
            deductible_used_fen=accumulator.deductible_used_fen,
            fund_used_fen=accumulator.fund_used_fen,
            account_balance_fen=ledger.available_fen(account),
            use_personal_account=use_personal_account,
        )
        settlement = Settlement(
            partner=partner,
            certificate=read.certificate,
            citizen=citizen,
            family_binding=read.binding,
            qr_token=read.token,
            facility=read.facility,
            policy=read.policy,
            state=SettlementState.PENDING_PAYMENT,
            year=year,
            total_fen=split.total_fen,
            eligible_fen=split.eligible_fen,
            deductible_fen=split.deductible_fen,
            fund_fen=split.fund_fen,
            account_fen=split.account_fen,
            self_pay_fen=split.self_pay_fen,
            use_personal_account=use_personal_account,
            created_at=now,
            expires_at=now + PAYMENT_WINDOW,
        )
        created_lines = [
            SettlementLine(
                settlement=settlement,
                position=index + 1,
                service=item,
                service_code=item.code,
                category=item.category,
                quantity=line.quantity,
                unit_price_fen=line.unit_price_fen,
                line_total_fen=part.line_total_fen,
                eligible_fen=part.eligible_fen,
            )
            for index, (line, item, part) in enumerate(zip(bill, services, split.lines, strict=True))
        ]
        # The reservation: the year's use and the account's hold.
        accumulator.deductible_used_fen += split.deductible_fen
        accumulator.fund_used_fen += split.fund_fen
        account.held_fen += split.account_fen
        audit = audit_event(
            actor=actor,
            action="settlement.create",
            object_type="settlement",
            object_id=settlement.public_id,
            region_code=citizen.region_id,
            after=_audit_snapshot(settlement),
        )
        store.settlement_insert(settlement, created_lines, accumulator, account, audit, read.audit_number)
        # The response is built from these objects: no re-read of what this transaction just wrote.
        settlement._prefetched_objects_cache = {"lines": created_lines}  # type: ignore[attr-defined]  # Django's, not in the stubs
        return settlement


def _restore_reservation(settlement: Settlement, *, actor: Actor, refund: bool) -> None:
    """Give back what the settlement took from its year (deductible and fund use) and from its
    account: the hold of a pending one (`refund=False`), or the debit of a paid one as a refund entry."""
    accumulator = store.accumulator_for_update(settlement.citizen_id, settlement.year)
    accumulator.deductible_used_fen -= settlement.deductible_fen
    accumulator.fund_used_fen -= settlement.fund_fen
    accumulator.save(update_fields=["deductible_used_fen", "fund_used_fen", "updated_at"])
    account = ledger.account_for_update(settlement.citizen_id)
    if refund:
        ledger.account_credit_refund(account, settlement=settlement, actor=actor)
    else:
        ledger.account_release(account, settlement.account_fen)


def _change(
    settlement: Settlement,
    *,
    actor: Actor,
    action: str,
    event: str,
    before: dict,
    fields: list[str],
    reason: str = "",
    writes: Sequence[tuple[str, Sequence[object]]] = (),
    audit_number: tuple[int, int] | None = None,
) -> Settlement:
    """Write the settlement's new state with its audit event and its partner's outbox event (and
    `writes`, statements of the same change) as one statement."""
    settlement.version += 1
    audit = audit_event(
        actor=actor,
        action=f"settlement.{action}",
        object_type="settlement",
        object_id=settlement.public_id,
        region_code=settlement.citizen.region_id,
        before=before,
        after=_audit_snapshot(settlement),
        reason=reason,
    )
    outbox = outbox_event(partner=settlement.partner, type=event, obj=settlement_repr(settlement))
    store.settlement_change_write(settlement, [*fields, "state", "version"], outbox, audit, audit_number, writes)
    enqueued(outbox)
    return settlement


def settlement_confirm(
    *,
    actor: Actor,
    settlement: Settlement | None = None,
    partner: Partner | None = None,
    public_id: str | None = None,
    partner_transaction_id: str,
    self_pay_fen: int,
    now: dt.datetime | None = None,
    claim: Claim | None = None,
) -> Settlement:
    """The wallet collected the self-pay: `paid`, and the account hold becomes a debit.

    The settlement is `settlement`, or `partner`'s with `public_id` (404 `not_found` if the partner
    has none, another's included). 409 `settlement_expired` at or after `expires_at` (swept or not
    yet), 409 `invalid_state` in any other state than `pending_payment`, 422 `amount_mismatch`. A
    card suspended since creation does not stop it (PARTNER_API.md). `claim`: the API request's
    idempotency claim, carried by the first statement.
    """
    with _transaction(claim):
        if settlement is not None:
            locked = store.settlement_lock_with_account(settlement.pk)
        else:
            if partner is None or public_id is None:
                raise TypeError("settlement_confirm takes a settlement, or a partner and a public_id")
            owned = store.settlement_owned_lock_with_account(partner.pk, public_id, claim)
            if owned is None:
                raise DomainError(SettlementErrorCode.NOT_FOUND, "Not found.", status=404)
            locked = owned
        # Locked with its account: created if missing, never None.
        settlement, account = locked.settlement, cast(PersonalAccount, locked.account)
        now = now or timezone.now()
        if settlement.state == SettlementState.EXPIRED or (
            settlement.state == SettlementState.PENDING_PAYMENT and now >= settlement.expires_at
        ):
            raise DomainError(
                SettlementErrorCode.SETTLEMENT_EXPIRED, _("This settlement expired before it was confirmed.")
            )
        if settlement.state != SettlementState.PENDING_PAYMENT:
            raise _invalid_state(settlement, _("This settlement is %(state)s: it cannot be confirmed."))
        if self_pay_fen != settlement.self_pay_fen:
            raise DomainError(
                SettlementErrorCode.AMOUNT_MISMATCH,
                _("The self-pay collected differs from the settlement's self-pay."),
                status=422,
                self_pay_fen=settlement.self_pay_fen,
            )
        before = _audit_snapshot(settlement)
        debit = ledger.debit_held_statements(account, settlement=settlement, actor=actor)
        settlement.state = SettlementState.PAID
        settlement.partner_transaction_id = partner_transaction_id
        settlement.paid_at = now
        return _change(
            settlement,
            actor=actor,
            action="confirm",
            event="settlement.paid",
            before=before,
            fields=["partner_transaction_id", "paid_at"],
            writes=debit,
            audit_number=locked.audit_number,
        )


@transaction.atomic
def settlement_cancel(*, actor: Actor, settlement: Settlement, now: dt.datetime | None = None) -> Settlement:
    """A pending settlement abandoned by its partner: `cancelled`, its reservation released.
    `now`: when it was released (the present unless given, as for the demo's past days)."""
    settlement = store.settlement_lock(settlement.pk)
    if settlement.state != SettlementState.PENDING_PAYMENT:
        raise _invalid_state(settlement, _("This settlement is %(state)s: it cannot be cancelled."))
    before = _audit_snapshot(settlement)
    _restore_reservation(settlement, actor=actor, refund=False)
    settlement.state = SettlementState.CANCELLED
    settlement.released_at = now or timezone.now()
    return _change(
        settlement, actor=actor, action="cancel", event="settlement.cancelled", before=before, fields=["released_at"]
    )


@transaction.atomic
def settlement_expire(*, actor: Actor, settlement: Settlement, now: dt.datetime | None = None) -> Settlement | None:
    """A pending settlement past `expires_at`: `expired`, its reservation released (None if not due)."""
    now = now or timezone.now()
    due = store.settlement_lock_due(settlement.pk, now)
    if due is None:  # confirmed, cancelled or being handled by someone else
        return None
    before = _audit_snapshot(due)
    _restore_reservation(due, actor=actor, refund=False)
    due.state = SettlementState.EXPIRED
    due.released_at = now
    return _change(due, actor=actor, action="expire", event="settlement.expired", before=before, fields=["released_at"])


def settlements_expire_due(*, now: dt.datetime | None = None, batch: int = 500) -> int:
    """Expire every pending settlement past `expires_at` (beat runs it every minute); returns how many."""
    now = now or timezone.now()
    actor = Actor.system("settlement expiry")
    done = 0
    while True:
        due = store.settlement_ids_due(now, batch)
        expired = 0
        for pk in due:
            if settlement_expire(actor=actor, settlement=Settlement(pk=pk), now=now) is not None:
                expired += 1
        done += expired
        if len(due) < batch or expired == 0:
            return done


@transaction.atomic
def settlement_refund(
    *, actor: Actor, settlement: Settlement, reason: str, now: dt.datetime | None = None
) -> Settlement:
    """Full refund of a paid settlement: its year's fund and deductible use and the account
    balance are restored exactly (whatever the card's state now). `now`: when it was refunded
    (the present unless given, as for the demo's past days)."""
    settlement = store.settlement_lock(settlement.pk)
    if settlement.state != SettlementState.PAID:
        raise _invalid_state(settlement, _("This settlement is %(state)s: only a paid settlement can be refunded."))
    before = _audit_snapshot(settlement)
    _restore_reservation(settlement, actor=actor, refund=True)
    settlement.state = SettlementState.REFUNDED
    settlement.refunded_at = now or timezone.now()
    settlement.refund_reason = reason[:128]
    return _change(
        settlement,
        actor=actor,
        action="refund",
        event="settlement.refunded",
        before=before,
        fields=["refunded_at", "refund_reason"],
        reason=reason,
    )
