"""The split of a settlement (DESIGN.md section 4): worked examples by hand and invariants."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insurance.models import DEFAULT_ELIGIBLE_SHARES, ServiceCategory
from insurance.reimbursement import BillLine, PolicyTerms, compute_split, round_fen
from portal.errors import DomainError

DEFAULT_SHARES = {category: Decimal(share) for category, share in DEFAULT_ELIGIBLE_SHARES.items()}


def terms(*, deductible=20000, ratio="0.60", cap=20_000_000, account=False, shares=None) -> PolicyTerms:
    return PolicyTerms(
        deductible_fen=deductible,
        ratio=Decimal(ratio),
        annual_cap_fen=cap,
        personal_account_allowed=account,
        eligible_shares=shares or DEFAULT_SHARES,
    )


def line(category: str, quantity: int, price: int, maximum: int | None = None) -> BillLine:
    return BillLine(
        category=category,
        quantity=quantity,
        unit_price_fen=price,
        max_unit_price_fen=price if maximum is None else maximum,
    )


CLINIC_VISIT = [
    line("registration", 1, 100),
    line("consultation", 1, 1000, 2500),
    line("lab_test", 1, 2000),
    line("drug_b", 3, 3333, 3500),  # 9999 x 0.90 = 8999.1 -> 8999
    line("non_catalogue", 1, 3000),  # not eligible
]


def split(lines, policy, *, deductible_used=0, fund_used=0, balance=0, use_account=False):
    return compute_split(
        lines=lines,
        policy=policy,
        deductible_used_fen=deductible_used,
        fund_used_fen=fund_used,
        account_balance_fen=balance,
        use_personal_account=use_account,
    )


# --- Worked by hand ----------------------------------------------------------------------


def test_a_bill_within_the_deductible_is_paid_entirely_by_the_citizen():
    result = split(CLINIC_VISIT, terms())
    assert [(line.line_total_fen, line.eligible_fen) for line in result.lines] == [
        (100, 100),
        (1000, 1000),
        (2000, 2000),
        (9999, 8999),
        (3000, 0),
    ]
    assert result.total_fen == 16099
    assert result.eligible_fen == 12099
    assert result.deductible_fen == 12099
    assert (result.fund_fen, result.account_fen, result.self_pay_fen) == (0, 0, 16099)


def test_the_rest_of_the_deductible_then_the_ratio_then_the_account_pay_in_that_order():
    result = split(CLINIC_VISIT, terms(account=True), deductible_used=15000, balance=10000, use_account=True)
    assert result.deductible_fen == 5000  # 20000 - 15000 left of the deductible
    assert result.fund_fen == 4259  # (12099 - 5000) x 0.60 = 4259.4
    assert result.account_fen == 10000  # min(16099 - 4259, 10000)
    assert result.self_pay_fen == 1840


def test_the_account_pays_everything_not_funded_when_the_balance_allows():
    result = split(CLINIC_VISIT, terms(account=True), deductible_used=20000, balance=1_000_000, use_account=True)
    assert result.deductible_fen == 0
    assert result.fund_fen == 7259  # 12099 x 0.60 = 7259.4
    assert result.account_fen == 16099 - 7259
    assert result.self_pay_fen == 0


def test_every_rounding_is_half_up_to_the_fen():
    lines = [line("drug_b", 1, 5), line("lab_test", 1, 10)]  # 5 x 0.90 = 4.5 -> 5
    result = split(lines, terms(deductible=0, ratio="0.70"))
    assert result.lines[0].eligible_fen == 5
    assert result.eligible_fen == 15
    assert result.fund_fen == 11  # 15 x 0.70 = 10.5 -> 11
    assert round_fen(Decimal("2.5")) == 3 and round_fen(Decimal("2.4999")) == 2


def test_the_fund_stops_at_what_is_left_of_the_annual_cap():
    lines = [line("drug_b", 1, 5), line("lab_test", 1, 10)]
    assert split(lines, terms(deductible=0, ratio="0.70", cap=1000), fund_used=995).fund_fen == 5
    assert split(lines, terms(deductible=0, ratio="0.70", cap=1000), fund_used=1000).fund_fen == 0
    # A year already past the cap (a lower cap in a later version) pays nothing more, and nothing negative.
    assert split(lines, terms(deductible=0, ratio="0.70", cap=1000), fund_used=5000).fund_fen == 0


def test_a_deductible_already_used_beyond_a_lowered_deductible_applies_nothing():
    result = split(CLINIC_VISIT, terms(deductible=1000), deductible_used=5000)
    assert result.deductible_fen == 0
    assert result.fund_fen == 7259


def test_the_account_pays_nothing_unless_both_the_policy_and_the_citizen_allow_it():
    assert split(CLINIC_VISIT, terms(account=False), balance=10**6, use_account=True).account_fen == 0
    assert split(CLINIC_VISIT, terms(account=True), balance=10**6, use_account=False).account_fen == 0
    assert split(CLINIC_VISIT, terms(account=True), balance=10**6, use_account=True).account_fen > 0


def test_overridden_shares_change_the_eligible_amount():
    shares = {**DEFAULT_SHARES, "drug_b": Decimal("0.85"), "non_catalogue": Decimal("0.10")}
    result = split(CLINIC_VISIT, terms(shares=shares))
    assert result.lines[3].eligible_fen == 8499  # 9999 x 0.85 = 8499.15
    assert result.lines[4].eligible_fen == 300


def test_a_unit_price_above_the_catalogue_maximum_is_rejected():
    with pytest.raises(DomainError) as caught:
        split([line("lab_test", 1, 2001, 2000)], terms())
    assert caught.value.code == "price_above_maximum"
    assert caught.value.status == 422


@pytest.mark.parametrize("quantity", [0, -1, 10000, True, 1.0])
def test_a_quantity_outside_1_to_9999_is_a_validation_error(quantity):
    with pytest.raises(DomainError) as caught:
        split([line("lab_test", quantity, 100)], terms())
    assert caught.value.code == "validation_error"
    assert caught.value.extra["field"] == "lines[0].quantity"


def test_the_largest_quantity_is_accepted():
    assert split([line("lab_test", 9999, 100)], terms()).total_fen == 999900


@pytest.mark.parametrize(
    "bad",
    [
        {"ratio": 0.7},  # a float is never money
        {"ratio": Decimal("1.01")},
        {"deductible_fen": -1},
        {"eligible_shares": {**DEFAULT_SHARES, "drug_b": Decimal("1.5")}},
        {"eligible_shares": {k: v for k, v in DEFAULT_SHARES.items() if k != "imaging"}},
    ],
)
def test_policy_numbers_out_of_range_are_refused(bad):
    values = {
        "deductible_fen": 0,
        "ratio": Decimal("0.5"),
        "annual_cap_fen": 100,
        "personal_account_allowed": False,
        "eligible_shares": DEFAULT_SHARES,
        **bad,
    }
    with pytest.raises(DomainError) as caught:
        split([line("lab_test", 1, 100)], PolicyTerms(**values))
    assert caught.value.code == "validation_error"


def test_an_empty_bill_or_negative_year_to_date_is_refused():
    with pytest.raises(DomainError):
        split([], terms())
    with pytest.raises(DomainError):
        split([line("lab_test", 1, 100)], terms(), fund_used=-1)


# --- Invariants -----------------------------------------------------------------------------

categories = st.sampled_from(ServiceCategory.values)
fractions = st.integers(min_value=0, max_value=10000).map(lambda n: Decimal(n) / Decimal(10000))
bill_lines = st.builds(
    lambda category, quantity, maximum, pick: BillLine(category, quantity, pick % (maximum + 1), maximum),
    categories,
    st.integers(1, 9999),
    st.integers(0, 2_000_000),
    st.integers(0, 2_000_000),
)
policies = st.builds(
    lambda deductible, ratio, cap, account, shares: PolicyTerms(
        deductible, ratio, cap, account, dict(zip(ServiceCategory.values, shares, strict=True))
    ),
    st.integers(0, 5_000_000),
    fractions,
    st.integers(0, 100_000_000),
    st.booleans(),
    st.lists(fractions, min_size=len(ServiceCategory.values), max_size=len(ServiceCategory.values)),
)


@settings(max_examples=400)
@given(
    lines=st.lists(bill_lines, min_size=1, max_size=100),
    policy=policies,
    deductible_used=st.integers(0, 10_000_000),
    fund_used=st.integers(0, 200_000_000),
    balance=st.integers(0, 10**10),
    use_account=st.booleans(),
)
def test_the_split_always_adds_up_and_nothing_is_negative(
    lines, policy, deductible_used, fund_used, balance, use_account
):
    result = split(
        lines, policy, deductible_used=deductible_used, fund_used=fund_used, balance=balance, use_account=use_account
    )
    assert result.fund_fen + result.account_fen + result.self_pay_fen == result.total_fen
    assert result.total_fen == sum(line.quantity * line.unit_price_fen for line in lines)
    assert result.total_fen == sum(line.line_total_fen for line in result.lines)
    assert result.eligible_fen == sum(line.eligible_fen for line in result.lines)
    for value in (
        result.total_fen,
        result.eligible_fen,
        result.deductible_fen,
        result.fund_fen,
        result.account_fen,
        result.self_pay_fen,
    ):
        assert isinstance(value, int) and value >= 0
    for computed in result.lines:
        assert 0 <= computed.eligible_fen <= computed.line_total_fen
    assert result.deductible_fen <= result.eligible_fen <= result.total_fen
    assert result.fund_fen <= result.eligible_fen - result.deductible_fen
    # Never beyond the year's deductible or cap, given what the year already used.
    assert result.deductible_fen <= max(0, policy.deductible_fen - deductible_used)
    assert result.fund_fen <= max(0, policy.annual_cap_fen - fund_used)
    assert result.account_fen <= balance
    if not (policy.personal_account_allowed and use_account):
        assert result.account_fen == 0


@settings(max_examples=200)
@given(bills=st.lists(st.lists(bill_lines, min_size=1, max_size=5), min_size=1, max_size=30), policy=policies)
def test_a_year_of_settlements_never_passes_the_deductible_or_the_cap(bills, policy):
    deductible_used = fund_used = 0
    for bill in bills:
        result = split(bill, policy, deductible_used=deductible_used, fund_used=fund_used)
        deductible_used += result.deductible_fen
        fund_used += result.fund_fen
        assert deductible_used <= policy.deductible_fen
        assert fund_used <= policy.annual_cap_fen
        # Until the deductible is used up, the fund pays nothing.
        if deductible_used < policy.deductible_fen:
            assert result.fund_fen == 0


@given(lines=st.lists(bill_lines, min_size=1, max_size=20), policy=policies)
def test_with_no_deductible_left_and_room_under_the_cap_the_fund_pays_the_ratio_of_the_eligible(lines, policy):
    result = split(lines, policy, deductible_used=policy.deductible_fen)
    expected = round_fen(Decimal(result.eligible_fen) * policy.ratio)
    assert result.fund_fen == min(expected, policy.annual_cap_fen)
