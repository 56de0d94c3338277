"""Settlement services: the split, reservation, confirmation, cancellation, expiry and refund
(DESIGN.md section 4, PARTNER_API.md "Settlement" and "Money rules in one place")."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from insurance import catalogue
from insurance import services as insurance_services
from payments.bindings.services import family_binding_revoke
from payments.linkages.services import linkage_unlink
from payments.models import AccountEntry, OutboxEvent, QrToken, Settlement, SettlementState
from payments.settlements import services as settlements
from portal.audit import verify_chain
from portal.errors import DomainError
from portal.models import AuditEvent
from testkit.settlements import (
    CAP,
    DEDUCTIBLE,
    SYSTEM,
    World,
    account,
    accumulator,
    assert_ledger_consistent,
    bound,
    lines,
    linked,
    make_wallet,
    token,
)

pytestmark = pytest.mark.django_db

# 2000 registration (eligible 2000), 2 x 5000 class-B drug (eligible 9000), 1000 outside the catalogue (0).
BILL = [("REG", 1, 2000), ("DRUGB", 2, 5000), ("NONCAT", 1, 1000)]


@pytest.fixture
def wallet(world):
    return make_wallet()


def create(partner, linkage, bill=BILL, *, binding=None, use_account=False, facility="H310-1", tok=None):
    return settlements.settlement_create(
        actor=SYSTEM,
        partner=partner,
        token=tok if tok is not None else token(linkage, binding),
        facility_code=facility,
        lines=lines(*bill),
        use_personal_account=use_account,
    )


def events_of(partner, type_: str) -> list[dict]:
    return [json.loads(e.body) for e in OutboxEvent.objects.filter(partner=partner, type=type_).order_by("id")]


# --- Creation and the split ----------------------------------------------------------------


def test_a_settlement_splits_the_bill_in_the_design_order_and_reserves_it(wallet, regions, world: World):
    linkage = linked(wallet, regions, balance=3000)
    settlement = create(wallet, linkage, use_account=True)

    assert settlement.public_id.startswith("stl_")
    assert settlement.state == SettlementState.PENDING_PAYMENT
    assert (settlement.total_fen, settlement.eligible_fen, settlement.deductible_fen) == (13000, 11000, 10000)
    assert settlement.fund_fen == 700  # (11000 - 10000) x 0.70
    assert settlement.account_fen == 3000  # min(13000 - 700, 3000)
    assert settlement.self_pay_fen == 9300
    assert settlement.fund_fen + settlement.account_fen + settlement.self_pay_fen == settlement.total_fen
    assert settlement.year == world.year
    assert settlement.expires_at - settlement.created_at == dt.timedelta(minutes=15)
    assert [(line.line_total_fen, line.eligible_fen) for line in settlement.lines.all()] == [
        (2000, 2000),
        (10000, 9000),
        (1000, 0),
    ]
    assert accumulator(linkage.citizen_id, world.year) == (10000, 700)
    assert (account(linkage.citizen_id).balance_fen, account(linkage.citizen_id).held_fen) == (3000, 3000)
    assert QrToken.objects.get(pk=settlement.qr_token_id).used_at is not None
    assert AuditEvent.objects.filter(action="settlement.create", object_id=settlement.public_id).exists()
    assert verify_chain() == []


def test_the_account_pays_nothing_unless_the_citizen_asks(wallet, regions):
    linkage = linked(wallet, regions, balance=3000)
    settlement = create(wallet, linkage, use_account=False)
    assert settlement.account_fen == 0
    assert settlement.self_pay_fen == 12300
    assert account(linkage.citizen_id).held_fen == 0


def test_the_account_pays_nothing_where_the_policy_does_not_allow_it(wallet, regions, world):
    catalogue.policy_create_version(
        actor=SYSTEM,
        region=regions["350000"],
        scheme="employee",
        year=world.year,
        effective_from=dt.date(world.year, 1, 1),
        deductible_fen=0,
        ratio="0.50",
        annual_cap_fen=CAP,
        personal_account_allowed=False,
    )
    linkage = linked(wallet, regions, region_code="350000", balance=3000)
    settlement = create(wallet, linkage, [("REG", 1, 2000)], use_account=True)
    assert (settlement.fund_fen, settlement.account_fen, settlement.self_pay_fen) == (1000, 0, 1000)


def test_pending_settlements_count_against_the_years_deductible_and_cap(wallet, regions, world):
    linkage = linked(wallet, regions)
    first = create(wallet, linkage, [("DRUGA", 1, 8000)])
    assert (first.deductible_fen, first.fund_fen) == (8000, 0)
    second = create(wallet, linkage, [("DRUGA", 1, 12000)])
    assert second.deductible_fen == 2000
    assert second.fund_fen == 7000  # (12000 - 2000) x 0.70
    big = [("DRUGA", 5, 20000)]  # eligible 100000: x 0.70 = 70000, capped at what is left
    third = create(wallet, linkage, big)
    assert third.fund_fen == CAP - 7000
    fourth = create(wallet, linkage, big)
    assert fourth.fund_fen == 0 and fourth.deductible_fen == 0
    assert accumulator(linkage.citizen_id, world.year) == (DEDUCTIBLE, CAP)


def test_a_binding_token_settles_against_the_beneficiarys_year_and_card(wallet, regions, world):
    holder = linked(wallet, regions)
    binding = bound(wallet, holder, regions)
    settlement = create(wallet, holder, [("DRUGA", 1, 12000)], binding=binding)
    assert settlement.citizen_id == binding.beneficiary_id
    assert settlement.family_binding_id == binding.pk
    assert settlement.certificate.citizen_id == binding.beneficiary_id
    assert accumulator(binding.beneficiary_id, world.year) == (10000, 1400)
    assert accumulator(holder.citizen_id, world.year) == (0, 0)


# --- Refusals, each leaving the token unused and nothing reserved --------------------------


def refused(code: str, status: int, call) -> None:
    before = (Settlement.objects.count(), QrToken.objects.filter(used_at__isnull=False).count())
    with pytest.raises(DomainError) as caught:
        call()
    assert (caught.value.code, caught.value.status) == (code, status)
    assert (Settlement.objects.count(), QrToken.objects.filter(used_at__isnull=False).count()) == before


@pytest.mark.parametrize("bad", ["", "nonsense", "v1.e30.AAAA", "v1." + "A" * 40 + "." + "B" * 86])
def test_anything_but_an_authentic_token_is_invalid_token(wallet, regions, bad):
    linked(wallet, regions)
    refused("invalid_token", 422, lambda: create(wallet, None, tok=bad))


def test_a_token_altered_after_signing_is_invalid_token(wallet, regions):
    linkage = linked(wallet, regions)
    good = token(linkage)
    head, payload, signature = good.split(".")
    refused("invalid_token", 422, lambda: create(wallet, linkage, tok=f"{head}.{payload}x.{signature}"))


def test_an_expired_token_is_token_expired(wallet, regions):
    linkage = linked(wallet, regions)
    old = token(linkage, now=timezone.now() - dt.timedelta(minutes=2))
    refused("token_expired", 422, lambda: create(wallet, linkage, tok=old))


def test_a_token_settles_once(wallet, regions):
    linkage = linked(wallet, regions)
    tok = token(linkage)
    create(wallet, linkage, tok=tok)
    refused("token_used", 409, lambda: create(wallet, linkage, tok=tok))


def test_a_token_of_an_unlinked_wallet_is_linkage_inactive(wallet, regions):
    linkage = linked(wallet, regions)
    tok = token(linkage)
    linkage_unlink(actor=SYSTEM, linkage=linkage, reason="citizen_request")
    refused("linkage_inactive", 409, lambda: create(wallet, linkage, tok=tok))


def test_a_token_of_a_revoked_binding_is_binding_inactive(wallet, regions):
    holder = linked(wallet, regions)
    binding = bound(wallet, holder, regions)
    tok = token(holder, binding)
    family_binding_revoke(actor=SYSTEM, binding=binding, reason="partner_request")
    refused("binding_inactive", 409, lambda: create(wallet, holder, tok=tok))


def test_a_card_suspended_after_the_token_was_minted_is_certificate_not_active(wallet, regions):
    linkage = linked(wallet, regions)
    tok = token(linkage)
    insurance_services.certificate_suspend(actor=SYSTEM, certificate=linkage.certificate, reason="lost phone")
    refused("certificate_not_active", 409, lambda: create(wallet, linkage, tok=tok))


@pytest.mark.parametrize("code", ["NOPE", "H310-OFF"])
def test_an_unknown_or_inactive_facility_is_unknown_facility(wallet, regions, code):
    catalogue.facility_create(
        actor=SYSTEM, code="H310-OFF", name_zh="关", name_en="Closed", kind="clinic", region=regions["310000"]
    )
    catalogue.facility_update(actor=SYSTEM, facility=catalogue.facilities_listed().get(code="H310-OFF"), active=False)
    linkage = linked(wallet, regions)
    refused("unknown_facility", 422, lambda: create(wallet, linkage, facility=code))


def test_an_unknown_or_inactive_service_is_unknown_service(wallet, regions):
    linkage = linked(wallet, regions)
    refused("unknown_service", 422, lambda: create(wallet, linkage, [("REG", 1, 100), ("NOPE", 1, 100)]))
    catalogue.service_update(actor=SYSTEM, item=catalogue.services_listed().get(code="REG"), active=False)
    refused("unknown_service", 422, lambda: create(wallet, linkage, [("REG", 1, 100)]))


def test_a_price_above_the_catalogue_maximum_is_refused(wallet, regions):
    linkage = linked(wallet, regions)
    refused("price_above_maximum", 422, lambda: create(wallet, linkage, [("REG", 1, 5001)]))


def test_a_citizen_without_a_policy_in_force_is_policy_unavailable(wallet, regions):
    linkage = linked(wallet, regions, region_code="440000")  # no policy published there
    refused("policy_unavailable", 409, lambda: create(wallet, linkage))


# --- Confirmation ---------------------------------------------------------------------------


def test_confirming_debits_the_account_and_tells_the_partner(wallet, regions):
    linkage = linked(wallet, regions, balance=5000)
    settlement = create(wallet, linkage, [("REG", 1, 2000)], use_account=True)
    assert (settlement.fund_fen, settlement.account_fen, settlement.self_pay_fen) == (0, 2000, 0)
    paid = settlements.settlement_confirm(
        actor=SYSTEM, settlement=settlement, partner_transaction_id="wx-1", self_pay_fen=settlement.self_pay_fen
    )
    assert (paid.state, paid.partner_transaction_id, paid.version) == ("paid", "wx-1", 2)
    acct = account(linkage.citizen_id)
    assert (acct.balance_fen, acct.held_fen) == (3000, 0)
    entry = AccountEntry.objects.get(settlement=paid)
    assert (entry.kind, entry.amount_fen, entry.balance_after_fen) == ("settlement", -2000, 3000)
    assert_ledger_consistent(linkage.citizen_id)
    [event] = events_of(wallet, "settlement.paid")
    assert event["data"]["object"]["id"] == paid.public_id
    assert event["data"]["object"]["state"] == "paid" and event["data"]["object"]["version"] == 2


def test_a_wrong_self_pay_is_amount_mismatch(wallet, regions):
    settlement = create(wallet, linked(wallet, regions))
    with pytest.raises(DomainError) as caught:
        settlements.settlement_confirm(
            actor=SYSTEM, settlement=settlement, partner_transaction_id="wx-1", self_pay_fen=settlement.self_pay_fen - 1
        )
    assert (caught.value.code, caught.value.status) == ("amount_mismatch", 422)


def test_a_settlement_is_confirmed_once(wallet, regions):
    settlement = create(wallet, linked(wallet, regions))
    settlements.settlement_confirm(
        actor=SYSTEM, settlement=settlement, partner_transaction_id="wx-1", self_pay_fen=settlement.self_pay_fen
    )
    with pytest.raises(DomainError) as caught:
        settlements.settlement_confirm(
            actor=SYSTEM, settlement=settlement, partner_transaction_id="wx-1", self_pay_fen=settlement.self_pay_fen
        )
    assert caught.value.code == "invalid_state"


def test_a_pending_settlement_stays_confirmable_after_the_card_is_suspended(wallet, regions):
    linkage = linked(wallet, regions)
    settlement = create(wallet, linkage)
    insurance_services.certificate_suspend(actor=SYSTEM, certificate=linkage.certificate, reason="lost phone")
    paid = settlements.settlement_confirm(
        actor=SYSTEM, settlement=settlement, partner_transaction_id="wx-1", self_pay_fen=settlement.self_pay_fen
    )
    assert paid.state == "paid"
    refunded = settlements.settlement_refund(actor=SYSTEM, settlement=paid, reason="returned")
    assert refunded.state == "refunded"


# --- Expiry and cancellation ------------------------------------------------------------------


def test_an_expired_settlement_cannot_be_confirmed_and_its_reservation_is_released(wallet, regions, world):
    linkage = linked(wallet, regions, balance=5000)
    settlement = create(wallet, linkage, use_account=True)
    late = settlement.expires_at + dt.timedelta(seconds=1)
    with pytest.raises(DomainError) as caught:  # past expires_at, not yet swept
        settlements.settlement_confirm(
            actor=SYSTEM,
            settlement=settlement,
            partner_transaction_id="wx-1",
            self_pay_fen=settlement.self_pay_fen,
            now=late,
        )
    assert caught.value.code == "settlement_expired"

    assert settlements.settlements_expire_due(now=settlement.expires_at - dt.timedelta(seconds=1)) == 0
    assert settlements.settlements_expire_due(now=late) == 1
    settlement.refresh_from_db()
    assert (settlement.state, settlement.version) == ("expired", 2)
    assert accumulator(linkage.citizen_id, world.year) == (0, 0)
    assert (account(linkage.citizen_id).balance_fen, account(linkage.citizen_id).held_fen) == (5000, 0)
    assert [e["data"]["object"]["state"] for e in events_of(wallet, "settlement.expired")] == ["expired"]
    with pytest.raises(DomainError) as caught:
        settlements.settlement_confirm(
            actor=SYSTEM, settlement=settlement, partner_transaction_id="wx-1", self_pay_fen=settlement.self_pay_fen
        )
    assert (caught.value.code, caught.value.status) == ("settlement_expired", 409)
    assert settlements.settlements_expire_due(now=late) == 0


def test_cancelling_releases_the_reservation_and_tells_the_partner(wallet, regions, world):
    linkage = linked(wallet, regions, balance=5000)
    settlement = create(wallet, linkage, use_account=True)
    cancelled = settlements.settlement_cancel(actor=SYSTEM, settlement=settlement)
    assert cancelled.state == "cancelled"
    assert accumulator(linkage.citizen_id, world.year) == (0, 0)
    assert account(linkage.citizen_id).held_fen == 0
    assert len(events_of(wallet, "settlement.cancelled")) == 1
    with pytest.raises(DomainError) as caught:
        settlements.settlement_cancel(actor=SYSTEM, settlement=settlement)
    assert caught.value.code == "invalid_state"
    # What it held is available again to the next settlement.
    again = create(wallet, linkage, use_account=True)
    assert (again.deductible_fen, again.account_fen) == (10000, 5000)


# --- Refund -------------------------------------------------------------------------------------


def test_a_refund_restores_the_year_and_the_account_exactly(wallet, regions, world):
    linkage = linked(wallet, regions, balance=4000)
    earlier = create(wallet, linkage, [("DRUGA", 1, 6000)])
    settlements.settlement_confirm(
        actor=SYSTEM, settlement=earlier, partner_transaction_id="wx-0", self_pay_fen=earlier.self_pay_fen
    )
    before_year = accumulator(linkage.citizen_id, world.year)
    before_balance = account(linkage.citizen_id).balance_fen

    settlement = create(wallet, linkage, [("DRUGA", 3, 9000)], use_account=True)
    settlements.settlement_confirm(
        actor=SYSTEM, settlement=settlement, partner_transaction_id="wx-1", self_pay_fen=settlement.self_pay_fen
    )
    assert settlement.deductible_fen == 4000 and settlement.fund_fen > 0 and settlement.account_fen == 4000
    refunded = settlements.settlement_refund(actor=SYSTEM, settlement=settlement, reason="returned")

    assert (refunded.state, refunded.version) == ("refunded", 3)
    assert accumulator(linkage.citizen_id, world.year) == before_year
    assert account(linkage.citizen_id).balance_fen == before_balance
    assert [e.kind for e in AccountEntry.objects.filter(settlement=settlement).order_by("id")] == [
        "settlement",
        "refund",
    ]
    assert_ledger_consistent(linkage.citizen_id)
    assert len(events_of(wallet, "settlement.refunded")) == 1
    assert verify_chain() == []


@pytest.mark.parametrize("state", ["pending_payment", "cancelled", "refunded"])
def test_only_a_paid_settlement_can_be_refunded(wallet, regions, state):
    settlement = create(wallet, linked(wallet, regions))
    if state == "cancelled":
        settlements.settlement_cancel(actor=SYSTEM, settlement=settlement)
    if state == "refunded":
        settlements.settlement_confirm(
            actor=SYSTEM, settlement=settlement, partner_transaction_id="wx", self_pay_fen=settlement.self_pay_fen
        )
        settlements.settlement_refund(actor=SYSTEM, settlement=settlement, reason="once")
    with pytest.raises(DomainError) as caught:
        settlements.settlement_refund(actor=SYSTEM, settlement=settlement, reason="twice")
    assert (caught.value.code, caught.value.status) == ("invalid_state", 409)


def test_a_refund_goes_back_to_the_year_the_settlement_belongs_to(wallet, regions, world):
    linkage = linked(wallet, regions)
    settlement = create(wallet, linkage, [("DRUGA", 1, 12000)])
    settlements.settlement_confirm(
        actor=SYSTEM, settlement=settlement, partner_transaction_id="wx", self_pay_fen=settlement.self_pay_fen
    )
    settlements.settlement_refund(actor=SYSTEM, settlement=settlement, reason="returned")
    assert accumulator(linkage.citizen_id, world.year) == (0, 0)
    assert accumulator(linkage.citizen_id, world.year + 1) == (0, 0)


def test_the_year_is_that_of_creation_in_shanghai():
    # 16:30 UTC on 31 December is already 1 January in Shanghai.
    assert settlements.settlement_year(dt.datetime(2026, 12, 31, 16, 30, tzinfo=dt.UTC)) == 2027
    assert settlements.settlement_year(dt.datetime(2026, 12, 31, 15, 59, tzinfo=dt.UTC)) == 2026
