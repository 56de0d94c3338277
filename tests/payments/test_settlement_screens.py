"""Settlement list and detail screens, and the year usage and ledger on the citizen page:
scoped by the citizen's insured region (404 outside it), filtered on the server, masked,
money in yuan with two decimals."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from payments.ledger import services as ledger
from payments.settlements import services
from payments.templatetags.settlement_tags import format_yuan
from portal.audit_labels import action_label
from portal.models import Role
from testkit.screens import sign_in
from testkit.settlements import CAP, DEDUCTIBLE, SYSTEM, lines, linked, make_wallet, publish_policies, token

pytestmark = pytest.mark.django_db

# 2000 registration (eligible 2000), 2 x 5000 class-B drug (eligible 9000), 1000 outside the catalogue (0).
BILL = [("REG", 1, 2000), ("DRUGB", 2, 5000), ("NONCAT", 1, 1000)]


@pytest.fixture
def wallet(world):
    return make_wallet()


def settle(partner, linkage, bill=BILL, *, use_account=False):
    return services.settlement_create(
        actor=SYSTEM,
        partner=partner,
        token=token(linkage),
        facility_code="H310-1",
        lines=lines(*bill),
        use_personal_account=use_account,
    )


@pytest.fixture
def two_regions(wallet, regions):
    """A Shanghai settlement (paid) and a Hebei one."""
    publish_policies(regions, "130000")
    here_link = linked(wallet, regions, name="王小明", balance=100_000)
    here = settle(wallet, here_link, use_account=True)
    here = services.settlement_confirm(
        actor=SYSTEM, settlement=here, partner_transaction_id="TX-4200001", self_pay_fen=here.self_pay_fen
    )
    there = settle(wallet, linked(wallet, regions, region_code="130000", name="赵大海"))
    return here, there


def test_yuan_is_formatted_from_integer_fen_without_floats():
    assert format_yuan(0) == "0.00"
    assert format_yuan(5) == "0.05"
    assert format_yuan(123456) == "1,234.56"
    assert format_yuan(-1001) == "-10.01"
    assert format_yuan(10**17 + 1) == "1,000,000,000,000,000.01"  # beyond float precision


# --- The list ---------------------------------------------------------------------------------


def test_the_list_shows_the_regions_settlements_masked_and_in_yuan(client, make_user, two_regions):
    here, there = two_regions
    sign_in(client, make_user(Role.CLERK))
    page = client.get(reverse("settlement_list")).content.decode()
    assert here.public_id in page
    assert there.public_id not in page
    citizen = here.citizen
    assert citizen.name_masked in page and "王*明" in page
    assert citizen.name not in page
    assert citizen.id_number not in page
    assert citizen.id_number_masked in page
    assert here.total_fen == 13_000
    assert ">130.00<" in page


@pytest.mark.parametrize("role", [Role.CLERK, Role.REGION_ADMIN, Role.AUDITOR])
def test_every_role_of_the_region_sees_the_list_and_the_detail(client, make_user, two_regions, role):
    here, _ = two_regions
    sign_in(client, make_user(role))
    assert client.get(reverse("settlement_list")).status_code == 200
    assert client.get(reverse("settlement_detail", args=[here.public_id])).status_code == 200


@pytest.mark.parametrize("role", [Role.CLERK, Role.REGION_ADMIN, Role.AUDITOR])
def test_another_regions_settlement_answers_404(client, make_user, two_regions, role):
    _, there = two_regions
    sign_in(client, make_user(role))
    assert client.get(reverse("settlement_detail", args=[there.public_id])).status_code == 404
    assert client.get(reverse("settlement_detail", args=["stl_does_not_exist"])).status_code == 404


def test_a_national_operator_sees_every_region(client, make_user, two_regions):
    here, there = two_regions
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    page = client.get(reverse("settlement_list")).content.decode()
    assert here.public_id in page and there.public_id in page


def listed(client, **params) -> str:
    response = client.get(reverse("settlement_list"), params)
    assert response.status_code == 200
    return response.content.decode()


def test_the_list_filters_by_state_partner_and_facility(client, make_user, wallet, regions, world):
    other_wallet = make_wallet()
    linkage = linked(wallet, regions)
    paid = settle(wallet, linkage)
    paid = services.settlement_confirm(
        actor=SYSTEM, settlement=paid, partner_transaction_id="T1", self_pay_fen=paid.self_pay_fen
    )
    pending = settle(wallet, linkage)
    elsewhere = services.settlement_create(
        actor=SYSTEM,
        partner=other_wallet,
        token=token(linked(other_wallet, regions)),
        facility_code="H310-1",
        lines=lines(*BILL),
    )
    sign_in(client, make_user(Role.CLERK))
    page = listed(client, state="paid")
    assert paid.public_id in page and pending.public_id not in page
    page = listed(client, partner=other_wallet.code)
    assert elsewhere.public_id in page and paid.public_id not in page
    assert pending.public_id in listed(client, facility="H310-1")
    assert pending.public_id not in listed(client, facility="NOPE")


def test_the_list_filters_by_amount_range_in_yuan(client, make_user, wallet, regions, world):
    linkage = linked(wallet, regions)
    small = settle(wallet, linkage, [("REG", 1, 1000)])  # 10.00
    middle = settle(wallet, linkage, [("REG", 1, 2000)])  # 20.00
    large = settle(wallet, linkage, [("REG", 1, 3000)])  # 30.00
    sign_in(client, make_user(Role.CLERK))
    page = listed(client, amount_min="20.00", amount_max="20")
    assert middle.public_id in page
    assert small.public_id not in page and large.public_id not in page
    page = listed(client, amount_min="10.01")
    assert small.public_id not in page and middle.public_id in page and large.public_id in page


def test_the_list_filters_by_date_range_in_shanghai(client, make_user, wallet, regions, world):
    made = settle(wallet, linked(wallet, regions))
    day = made.created_at.astimezone(services.SHANGHAI).date()
    sign_in(client, make_user(Role.CLERK))
    assert made.public_id in listed(client, date_from=day.isoformat(), date_to=day.isoformat())
    assert made.public_id not in listed(client, date_from=(day + dt.timedelta(days=1)).isoformat())
    assert made.public_id not in listed(client, date_to=(day - dt.timedelta(days=1)).isoformat())


def test_the_list_sorts_by_total(client, make_user, wallet, regions, world):
    linkage = linked(wallet, regions)
    small = settle(wallet, linkage, [("REG", 1, 1000)])
    large = settle(wallet, linkage, [("REG", 1, 3000)])
    middle = settle(wallet, linkage, [("REG", 1, 2000)])
    sign_in(client, make_user(Role.CLERK))
    page = listed(client, sort="-total")
    assert page.index(large.public_id) < page.index(middle.public_id) < page.index(small.public_id)
    page = listed(client, sort="total")
    assert page.index(small.public_id) < page.index(middle.public_id) < page.index(large.public_id)


@pytest.mark.parametrize(
    "params",
    [
        {"amount_min": "abc"},
        {"amount_min": "-1"},
        {"amount_min": "1.005"},
        {"date_from": "2026-02-30"},
        {"amount_min": "30", "amount_max": "10"},
        {"date_from": "2026-03-02", "date_to": "2026-03-01"},
        {"state": "nonsense"},
        {"sort": "password"},
    ],
)
def test_bad_filters_are_form_errors_not_500s(client, make_user, wallet, regions, world, params):
    made = settle(wallet, linked(wallet, regions))
    sign_in(client, make_user(Role.CLERK))
    page = listed(client, **params)
    assert 'class="errorlist' in page
    assert made.public_id not in page


def test_the_list_costs_the_same_number_of_queries_for_2_or_20_rows(client, make_user, wallet, regions, world):
    sign_in(client, make_user(Role.CLERK))
    for _ in range(2):
        settle(wallet, linked(wallet, regions))
    client.get(reverse("settlement_list"))  # warm the session and the content types
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("settlement_list"))
    for _ in range(18):
        settle(wallet, linked(wallet, regions))
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("settlement_list"))
    assert response.content.decode().count('href="/partners/settlements/stl') == 20
    assert len(many) == len(few)
    assert len(many) <= 10


# --- The detail ---------------------------------------------------------------------------------


def test_the_detail_shows_the_split_line_by_line_the_policy_partner_and_history(client, make_user, two_regions):
    here, _ = two_regions
    sign_in(client, make_user(Role.AUDITOR))
    page = client.get(reverse("settlement_detail", args=[here.public_id])).content.decode()
    # lines: quantity, unit price, line total, eligible (class-B drug at 90 %)
    assert "50.00" in page and "100.00" in page and "90.00" in page
    for amount in (
        here.total_fen,
        here.eligible_fen,
        here.deductible_fen,
        here.fund_fen,
        here.account_fen,
        here.self_pay_fen,
    ):
        assert format_yuan(amount) in page
    assert f'id="fund">{format_yuan(here.fund_fen)}<' in page
    assert f'id="self-pay">{format_yuan(here.self_pay_fen)}<' in page
    assert "TX-4200001" in page
    assert reverse("policy_versions", args=["310000", here.policy.scheme, here.policy.year]) in page
    assert f"v{here.policy.version}" in page
    with translation.override("zh-hans"):  # the history says what happened, in the reader's language
        assert action_label("settlement.create") in page and action_label("settlement.confirm") in page
    assert here.citizen.name not in page and here.citizen.id_number not in page


# --- The citizen page: the year's usage and the ledger -----------------------------------------


def test_the_citizen_page_shows_the_years_usage_against_the_policy(client, make_user, wallet, regions, world):
    linkage = linked(wallet, regions, balance=100_000)
    made = settle(wallet, linkage)  # eligible 11000: deductible 10000, fund 700
    assert (made.deductible_fen, made.fund_fen) == (DEDUCTIBLE, 700)
    sign_in(client, make_user(Role.CLERK))
    page = client.get(reverse("citizen_detail", args=[linkage.citizen_id])).content.decode()
    assert f'id="usage-deductible">{format_yuan(DEDUCTIBLE)} / {format_yuan(DEDUCTIBLE)}<' in page
    assert 'id="usage-fund">7.00<' in page
    assert f'id="usage-cap-left">{format_yuan(CAP - 700)} / {format_yuan(CAP)}<' in page
    services.settlement_cancel(actor=SYSTEM, settlement=made)  # a released settlement no longer counts
    page = client.get(reverse("citizen_detail", args=[linkage.citizen_id])).content.decode()
    assert 'id="usage-fund">0.00<' in page


def test_the_citizen_page_pages_the_ledger_and_its_balance_is_the_sum_of_entries(
    client, make_user, wallet, regions, world
):
    linkage = linked(wallet, regions, balance=100_000)
    for balance in range(100_001, 100_013):  # twelve more adjustments: 13 entries in all
        ledger.account_balance_set(actor=SYSTEM, citizen=linkage.citizen, balance_fen=balance)
    made = settle(wallet, linkage, use_account=True)
    services.settlement_confirm(
        actor=SYSTEM, settlement=made, partner_transaction_id="T", self_pay_fen=made.self_pay_fen
    )
    expected = 100_012 - made.account_fen
    sign_in(client, make_user(Role.CLERK))
    url = reverse("citizen_detail", args=[linkage.citizen_id])
    first = client.get(url).content.decode()
    assert f'id="account-balance">{format_yuan(expected)}<' in first
    assert made.public_id in first  # newest entries first
    assert "ledger_page=2" in first
    second = client.get(url, {"ledger_page": 2}).content.decode()
    assert made.public_id not in second
    assert f'id="account-balance">{format_yuan(expected)}<' in second


def test_the_usage_block_says_so_when_no_policy_is_in_force(client, make_user, make_citizen, regions):
    citizen = make_citizen("310000")
    sign_in(client, make_user(Role.CLERK))
    page = client.get(reverse("citizen_detail", args=[citizen.pk])).content.decode()
    assert 'id="usage"' in page
    assert 'id="account-balance">0.00<' in page


def test_the_screens_speak_chinese_by_default_and_english_on_request(client, make_user, two_regions):
    here, _ = two_regions
    sign_in(client, make_user(Role.CLERK))
    page = client.get(reverse("settlement_detail", args=[here.public_id])).content.decode()
    assert "统筹基金" in page and "自付" in page and "状态历史" in page
    client.cookies["django_language"] = "en"
    page = client.get(reverse("settlement_detail", args=[here.public_id])).content.decode()
    assert "Pooled fund" in page and "State history" in page
