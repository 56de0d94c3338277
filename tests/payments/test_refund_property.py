"""Property: whatever the bill, the year so far and the account, a refund restores
exactly what its settlement took (through the real services and database)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.models import PersonalAccount
from payments.settlements import services as settlements
from testkit.settlements import (
    SERVICES,
    SYSTEM,
    accumulator,
    assert_ledger_consistent,
    lines,
    linked,
    make_wallet,
    token,
)

pytestmark = pytest.mark.django_db


def _balance(citizen_id: int) -> int:
    """The account's balance; a citizen who never had money has no account row yet."""
    row = PersonalAccount.objects.filter(citizen_id=citizen_id).first()
    return row.balance_fen if row else 0


line = st.tuples(
    st.sampled_from(sorted(SERVICES)),
    st.integers(min_value=1, max_value=20),
    st.integers(min_value=1, max_value=5_000),
)
bills = st.lists(line, min_size=1, max_size=6)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    earlier=st.lists(bills, max_size=3),
    bill=bills,
    balance=st.integers(min_value=0, max_value=30_000),
    use_account=st.booleans(),
)
def test_a_refund_restores_exactly_what_the_settlement_took(world, regions, earlier, bill, balance, use_account):
    wallet = make_wallet()
    linkage = linked(wallet, regions, balance=balance)
    for number, earlier_bill in enumerate(earlier):  # some year-to-date use first, paid
        paid = settlements.settlement_create(
            actor=SYSTEM,
            partner=wallet,
            token=token(linkage),
            facility_code="H310-1",
            lines=lines(*earlier_bill),
            use_personal_account=use_account,
        )
        settlements.settlement_confirm(
            actor=SYSTEM, settlement=paid, partner_transaction_id=f"e{number}", self_pay_fen=paid.self_pay_fen
        )
    year_before = accumulator(linkage.citizen_id, world.year)
    balance_before = _balance(linkage.citizen_id)

    settlement = settlements.settlement_create(
        actor=SYSTEM,
        partner=wallet,
        token=token(linkage),
        facility_code="H310-1",
        lines=lines(*bill),
        use_personal_account=use_account,
    )
    assert settlement.fund_fen + settlement.account_fen + settlement.self_pay_fen == settlement.total_fen
    settlements.settlement_confirm(
        actor=SYSTEM, settlement=settlement, partner_transaction_id="t", self_pay_fen=settlement.self_pay_fen
    )
    took = (accumulator(linkage.citizen_id, world.year), _balance(linkage.citizen_id))
    assert took == (
        (year_before[0] + settlement.deductible_fen, year_before[1] + settlement.fund_fen),
        balance_before - settlement.account_fen,
    )

    settlements.settlement_refund(actor=SYSTEM, settlement=settlement, reason="returned")

    assert accumulator(linkage.citizen_id, world.year) == year_before
    assert _balance(linkage.citizen_id) == balance_before
    if PersonalAccount.objects.filter(citizen_id=linkage.citizen_id).exists():
        assert_ledger_consistent(linkage.citizen_id)
