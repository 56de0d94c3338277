"""The main menu: four groups by the user's work, and counts of what waits for the user, in the
user's regions only, read with a fixed number of queries."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from backoffice.navigation import menu_counts
from payments.models import OutboxEvent, OutboxState, RiskFlag, RiskRule
from portal.models import Role
from testkit.bindings import bind, link, make_wallet, register
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db


def waiting_in(regions, partner, region_code: str, serial: int) -> None:
    """One pending family binding, one open risk flag and one dead delivery in the region."""
    holder, _ = register(regions, region_code, name="王小明")
    linkage = link(partner, holder, ref=f"ref-{region_code}-{serial}")
    _, beneficiary_id = register(regions, region_code, name="李四", card=True)
    bind(partner, linkage, beneficiary_id)
    RiskFlag.objects.create(
        rule=RiskRule.choices[0][0],
        subject_type="settlement",
        subject_id=f"stl_{region_code}_{serial}",
        day=timezone.localdate(),
        region=regions[region_code],
        created_at=timezone.now(),
    )
    OutboxEvent.objects.filter(object_id=linkage.public_id).update(state=OutboxState.DEAD)


@pytest.fixture
def waiting(regions):
    partner = make_wallet("wechat")
    for region_code in ("310000", "440000"):
        waiting_in(regions, partner, region_code, 1)
    return partner


def count_on(page: str, label: str) -> str | None:
    match = re.search(rf">{label} <span class=\"count\"[^>]*>(\d+)</span></a>", page)
    return match.group(1) if match else None


def test_a_region_administrator_sees_what_waits_in_their_region_only(client, make_user, waiting):
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    page = client.get(reverse("mfa_index")).content.decode()
    assert count_on(page, "亲情账户") == "1"
    assert count_on(page, "风险审核") == "1"
    assert count_on(page, "投递监控") == "1"
    for group in ("参保人与电子凭证", "结算与基金", "合作方", "系统管理"):
        assert f"<summary>{group}" in page, group


def test_a_national_operator_sees_what_waits_in_every_region(client, make_user, waiting):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    page = client.get(reverse("mfa_index")).content.decode()
    assert (count_on(page, "亲情账户"), count_on(page, "风险审核"), count_on(page, "投递监控")) == ("2", "2", "2")


def test_a_clerk_sees_pending_bindings_but_no_risk_or_delivery_count(client, make_user, waiting):
    sign_in(client, make_user(Role.CLERK, ("440000",)))
    page = client.get(reverse("mfa_index")).content.decode()
    assert count_on(page, "亲情账户") == "1"
    assert "风险审核" not in page
    assert "投递监控" not in page
    assert "合作方" not in page


def test_nothing_waiting_shows_no_count(client, make_user, regions):
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    page = client.get(reverse("mfa_index")).content.decode()
    assert 'class="count"' not in page


def test_the_counts_cost_the_same_few_queries_whatever_the_data(make_user, regions, waiting, django_assert_num_queries):
    admin = make_user(Role.REGION_ADMIN, ("310000", "440000"))
    with django_assert_num_queries(4):  # the user's regions, then one count per kind
        before = menu_counts(admin)
    for serial in (2, 3):
        waiting_in(regions, waiting, "310000", serial)
    with django_assert_num_queries(4):
        after = menu_counts(admin)
    assert (before.pending_bindings, before.open_risk_flags, before.dead_deliveries) == (2, 2, 2)
    assert (after.pending_bindings, after.open_risk_flags, after.dead_deliveries) == (4, 4, 4)


def test_the_export_note_speaks_of_filters_only_where_there_are_filters(client, make_user, regions):
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    with_filters = client.get(reverse("citizen_search")).content.decode()
    without = client.get(reverse("staff_list")).content.decode()
    assert "按上方筛选条件导出" in with_filters
    assert 'class="actions export-buttons"' in without
    assert "按上方筛选条件导出" not in without
    assert "最多" in without
