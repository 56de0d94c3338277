"""The dashboard screens: scope (another region answers 404), a fixed number of queries that never
touch the citizen or settlement tables, SVG charts, and the figures the rollups hold."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backoffice.dashboards.rollups import rollups_rebuild, rollups_tick
from backoffice.navigation import menu_counts
from insurance import services as insurance_services
from payments.linkages.services import linkage_create
from payments.models import OutboxEvent, OutboxState
from portal.models import Role
from testkit.dashboards import busy_day
from testkit.screens import make_partner, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(client):
    client.cookies["django_language"] = "en"


@pytest.fixture
def populated(make_citizen, system_actor):
    partner = make_partner()
    for region in ("310000", "310000", "440000"):
        make_citizen(region, with_card=True)
    citizen = make_citizen("310000", with_card=True)
    insurance_services.certificate_revoke(actor=system_actor, certificate=citizen.current_certificate(), reason="test")
    rollups_rebuild()
    return partner


def test_region_admin_sees_their_region(client, make_user, populated):
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    response = client.get(reverse("dashboard_region", args=["310000"]))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-metric="active-citizens">3<' in body
    assert 'data-card-state="pending_activation">2<' in body
    assert 'data-card-state="revoked">1<' in body


def test_region_admin_gets_404_for_another_region(client, make_user, populated):
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    assert client.get(reverse("dashboard_region", args=["440000"])).status_code == 404
    assert client.get(reverse("dashboard_region", args=["999999"])).status_code == 404


def test_clerk_gets_404_for_another_region_and_sees_only_their_own_in_the_overview(client, make_user, populated):
    sign_in(client, make_user(Role.CLERK, ("440000",)))
    assert client.get(reverse("dashboard_region", args=["310000"])).status_code == 404
    body = client.get(reverse("dashboard")).content.decode()
    assert 'data-metric="active-citizens">1<' in body
    assert reverse("dashboard_region", args=["310000"]) not in body and ">Shanghai<" not in body


def test_national_operator_sees_all_regions_side_by_side_with_totals(client, make_user, populated, regions):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    response = client.get(reverse("dashboard"))
    body = response.content.decode()
    for region in regions.values():
        assert reverse("dashboard_region", args=[region.code]) in body
    assert 'data-metric="active-citizens">4<' in body
    assert ">All regions<" in body


def test_auditor_and_administrator_land_on_the_dashboard_clerk_on_search(client, make_user, regions):
    sign_in(client, make_user(Role.AUDITOR, ("310000",)))
    assert client.get(reverse("home"))["Location"] == reverse("dashboard")
    client.logout()
    sign_in(client, make_user(Role.CLERK, ("310000",)))
    assert client.get(reverse("home"))["Location"] == reverse("citizen_search")


def test_anonymous_is_sent_to_sign_in(client, regions):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_page_has_accessible_svg_charts(client, make_user, populated):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    body = client.get(reverse("dashboard")).content.decode()
    assert body.count("<svg") >= 5
    assert 'role="img"' in body
    assert "<title" in body and "E-cards by state" in body
    assert "<polyline" in body


@pytest.mark.parametrize(
    "role, codes, url_args",
    [
        (Role.NATIONAL_OPERATOR, (), None),
        (Role.REGION_ADMIN, ("310000",), ["310000"]),
    ],
)
def test_page_costs_a_fixed_number_of_queries_and_reads_no_big_table(
    client, make_user, populated, make_citizen, django_assert_max_num_queries, role, codes, url_args
):
    user = make_user(role, codes)
    sign_in(client, user)
    url = reverse("dashboard_region", args=url_args) if url_args else reverse("dashboard")
    client.get(url)  # warm the session and MFA look-ups
    with CaptureQueriesContext(connection) as first:
        client.get(url)
    for _ in range(5):
        make_citizen("310000", with_card=True)
    rollups_rebuild()
    with django_assert_max_num_queries(len(first)), CaptureQueriesContext(connection) as second:
        assert client.get(url).status_code == 200
    assert len(first) <= 16
    # The menu counts what waits for the user on every page (tests/portal/test_navigation.py);
    # the dashboard's own figures come from the rollups alone.
    with CaptureQueriesContext(connection) as menu:
        menu_counts(user)
    menu_sql = {q["sql"] for q in menu.captured_queries}
    sql = " ".join(q["sql"] for q in second.captured_queries if q["sql"] not in menu_sql)
    for table in (
        "insurance_citizen",
        "insurance_certificate",
        "payments_settlement",
        "payments_walletlinkage",
        "payments_familybinding",
        "portal_rollupfact",
    ):
        assert f'"{table}"' not in sql, table


@pytest.mark.usefixtures("world")
def test_settlements_and_refunds_show_as_fund_spend_in_yuan(client, make_user, regions):
    busy_day(regions)
    rollups_tick()
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    body = response.content.decode()
    # Two bills of 320.00 yuan paid by two citizens, each past the 100.00 deductible at 70 %: fund 154.00 each;
    # one refunded the same day, so 154.00 net.
    assert 'data-metric="fund-today">154.00<' in body
    assert 'data-metric="fund-year">154.00<' in body


def test_partner_health_counts_a_failing_event_as_failing_only(client, make_user, make_citizen, system_actor):
    """As the delivery monitor's header does (issue 16, finding 9): pending is not yet tried."""
    partner = make_partner()
    for ref in ("u-1", "u-2"):
        citizen = make_citizen("310000", with_card=True)
        linkage_create(actor=system_actor, partner=partner, citizen=citizen, partner_user_ref=ref)
    tried = OutboxEvent.objects.filter(partner=partner, state=OutboxState.PENDING).first()
    OutboxEvent.objects.filter(pk=tried.pk).update(attempts=2)
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    body = client.get(reverse("dashboard")).content.decode()
    row = re.search(r"<tr><td>WeChat Pay</td>.*?</tr>", body).group(0)
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', row)[1:3] == ["1", "1"]
