"""Reimbursement policy screens: versions with the one in force, the new-version form
(prefilled, validated, confirmed with what changes), roles and region scope."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from insurance import catalogue
from insurance.models import ReimbursementPolicy, ServiceCategory
from portal.models import AuditEvent, Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

TODAY = catalogue.shanghai_today()
YEAR = TODAY.year
NEXT_YEAR = YEAR + 1


@pytest.fixture
def as_role(client, make_user):
    def factory(role: str, region_codes: tuple[str, ...] = ("310000",)):
        user = make_user(role, region_codes)
        sign_in(client, user)
        return user

    return factory


@pytest.fixture
def publish(regions, system_actor):
    def factory(region_code="310000", scheme="resident", year=YEAR, effective_from=dt.date(YEAR, 1, 1), **overrides):
        values = {
            "deductible_fen": 30000,
            "ratio": "0.75",
            "annual_cap_fen": 40_000_000,
            "personal_account_allowed": False,
            "premium_fen": 38000 if scheme == "resident" else None,
            **overrides,
        }
        return catalogue.policy_create_version(
            actor=system_actor,
            region=regions[region_code],
            scheme=scheme,
            year=year,
            effective_from=effective_from,
            today=min(effective_from, TODAY),
            **values,
        )

    return factory


def version_post(effective_from: dt.date, **overrides) -> dict:
    data = {
        "effective_from": effective_from.isoformat(),
        "deductible_fen": "350.00",
        "ratio": "80",
        "annual_cap_fen": "400000",
        "premium_fen": "380.00",
        "personal_account_allowed": "",
        **{f"share_{c}": "100" for c in ServiceCategory.values},
        "share_drug_b": "85",
        "share_non_catalogue": "0",
        "share_other": "0",
    }
    data.update(overrides)
    return data


def versions_url(region="310000", scheme="resident", year=YEAR) -> str:
    return reverse("policy_versions", args=[region, scheme, year])


def new_url(region="310000", scheme="resident", year=YEAR) -> str:
    return reverse("policy_new_version", args=[region, scheme, year])


def test_the_versions_page_lists_every_version_and_marks_the_one_in_force(client, as_role, publish):
    as_role(Role.AUDITOR)
    first = publish()
    later = publish(effective_from=dt.date(YEAR, 12, 31), deductible_fen=50000)
    response = client.get(versions_url())
    assert response.status_code == 200
    assert response.context["versions"] == [later, first]
    expected_in_force = later if TODAY == dt.date(YEAR, 12, 31) else first
    assert response.context["in_force_id"] == expected_in_force.pk
    body = response.content.decode()
    assert "300.00" in body and "500.00" in body and "75\u00a0%" in body and "380.00" in body


def test_the_index_lists_policies_of_the_users_regions_only(client, as_role, publish):
    as_role(Role.REGION_ADMIN, ("310000",))
    publish("310000")
    publish("440000")
    groups = list(client.get(reverse("policy_index")).context["page"])
    assert [(g["region_id"], g["scheme"], g["year"]) for g in groups] == [("310000", "resident", YEAR)]


def test_the_new_version_form_is_prefilled_from_the_latest_version(client, as_role, publish):
    as_role(Role.REGION_ADMIN)
    publish(deductible_fen=123456, ratio="0.725", eligible_shares={"drug_b": "0.8"})
    body = client.get(new_url()).content.decode()
    assert 'value="1234.56"' in body
    assert 'value="72.5"' in body
    assert 'value="80"' in body  # drug_b share as a percentage
    assert 'value="380.00"' in body


def test_a_region_admin_publishes_a_new_version_after_confirming_what_changes(client, as_role, publish):
    as_role(Role.REGION_ADMIN, ("310000",))
    previous = publish()
    effective = dt.date(NEXT_YEAR, 1, 1)
    url = new_url(year=NEXT_YEAR)
    publish(year=NEXT_YEAR, effective_from=effective)
    data = version_post(effective, deductible_fen="350.10")

    confirm = client.post(url, data)
    assert confirm.status_code == 200
    assert confirm.context["step"] == "confirm"
    changed = {row["name"]: row for row in confirm.context["changes"] if row["changed"]}
    assert changed["deductible_fen"]["old"] == 30000 and changed["deductible_fen"]["new"] == 35010
    assert changed["ratio"]["new"] == Decimal("0.8")
    assert "share_drug_b" in changed and "share_drug_a" not in changed
    page = confirm.content.decode()
    assert "300.00" in page and "350.10" in page
    # The confirmation carries the entered values forward as hidden fields.
    assert 'type="hidden" name="share_drug_b" value="85"' in page
    assert 'type="hidden" name="deductible_fen" value="350.10"' in page
    assert ReimbursementPolicy.objects.filter(year=NEXT_YEAR).count() == 1

    done = client.post(url, {**data, "confirmed": "yes"})
    assert done.status_code == 302
    policy = ReimbursementPolicy.objects.get(year=NEXT_YEAR, version=2)
    assert (policy.deductible_fen, policy.ratio, policy.annual_cap_fen, policy.premium_fen) == (
        35010,
        Decimal("0.8000"),
        40_000_000,
        38000,
    )
    assert policy.eligible_shares["drug_b"] == "0.85"
    assert not policy.personal_account_allowed
    assert AuditEvent.objects.filter(action="policy.version_created", object_id=str(policy.pk)).exists()
    previous.refresh_from_db()
    assert previous.deductible_fen == 30000  # a version is never edited


def test_a_national_operator_publishes_the_first_version_of_an_employee_policy(client, as_role, regions):
    as_role(Role.NATIONAL_OPERATOR, ())
    url = new_url("440000", "employee", NEXT_YEAR)
    data = version_post(dt.date(NEXT_YEAR, 1, 1), personal_account_allowed="on")
    del data["premium_fen"]
    assert client.post(url, data).context["step"] == "confirm"
    assert client.post(url, {**data, "confirmed": "yes"}).status_code == 302
    policy = ReimbursementPolicy.objects.get(region_id="440000", scheme="employee", year=NEXT_YEAR)
    assert policy.version == 1 and policy.premium_fen is None and policy.personal_account_allowed


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ratio", "100.5"),
        ("ratio", "-5"),
        ("share_drug_a", "150"),
        ("share_drug_b", "1.234"),
        ("deductible_fen", "-1"),
        ("annual_cap_fen", "12.345"),
        ("premium_fen", ""),
    ],
)
def test_bad_policy_input_is_a_form_error_and_nothing_is_published(client, as_role, field, value):
    as_role(Role.REGION_ADMIN)
    response = client.post(
        new_url(year=NEXT_YEAR), {**version_post(dt.date(NEXT_YEAR, 1, 1)), field: value, "confirmed": "yes"}
    )
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not ReimbursementPolicy.objects.exists()


def test_an_effective_date_in_the_past_is_a_form_error(client, as_role, publish):
    as_role(Role.REGION_ADMIN)
    publish()
    response = client.post(new_url(), {**version_post(TODAY - dt.timedelta(days=1)), "confirmed": "yes"})
    assert response.status_code == 200
    assert [e.code for e in response.context["form"].errors.as_data()["effective_from"]] == ["in_past"]
    assert ReimbursementPolicy.objects.count() == 1


def test_an_effective_date_after_the_policy_year_is_a_form_error_from_the_service(client, as_role):
    as_role(Role.REGION_ADMIN)
    response = client.post(new_url(year=NEXT_YEAR), {**version_post(dt.date(NEXT_YEAR + 1, 1, 2)), "confirmed": "yes"})
    assert response.status_code == 200
    assert response.context["form"].errors["effective_from"]
    assert not ReimbursementPolicy.objects.exists()


@pytest.mark.parametrize("role", [Role.CLERK, Role.AUDITOR])
def test_clerks_and_auditors_may_read_but_not_publish_a_policy(client, as_role, publish, role):
    as_role(role)
    publish()
    assert client.get(versions_url()).status_code == 200
    assert client.get(new_url()).status_code == 403
    data = {**version_post(dt.date(NEXT_YEAR, 1, 1)), "confirmed": "yes"}
    assert client.post(new_url(year=NEXT_YEAR), data).status_code == 403
    assert ReimbursementPolicy.objects.count() == 1


def test_another_regions_policy_answers_404(client, as_role, publish):
    as_role(Role.REGION_ADMIN, ("310000",))
    publish("440000")
    assert client.get(versions_url("440000")).status_code == 404
    assert client.get(new_url("440000")).status_code == 404
    data = {**version_post(dt.date(NEXT_YEAR, 1, 1)), "confirmed": "yes"}
    assert client.post(new_url("440000", year=NEXT_YEAR), data).status_code == 404
    assert not ReimbursementPolicy.objects.filter(region_id="440000", year=NEXT_YEAR).exists()


def test_an_unknown_scheme_answers_404(client, as_role):
    as_role(Role.REGION_ADMIN, ("310000",))
    assert client.get(versions_url(scheme="premium")).status_code == 404
