"""Catalogue, facilities and policy versions: services, the policy in force, demo data."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import DatabaseError, transaction

from insurance import catalogue
from insurance.catalogue_demo import FACILITIES, seed_catalogue
from insurance.models import Facility, ReimbursementPolicy, ServiceCategory, ServiceItem
from portal.audit import verify_chain
from portal.errors import DomainError
from portal.models import AuditEvent

TODAY = dt.date(2026, 6, 15)


@pytest.fixture
def publish(regions, system_actor):
    def factory(
        region_code="310000",
        scheme="employee",
        year=2026,
        effective_from=dt.date(2026, 1, 1),
        *,
        today=TODAY,
        **overrides,
    ):
        values = {
            "deductible_fen": 30000,
            "ratio": "0.75",
            "annual_cap_fen": 40_000_000,
            "personal_account_allowed": scheme == "employee",
            "premium_fen": 38000 if scheme == "resident" else None,
            **overrides,
        }
        return catalogue.policy_create_version(
            actor=system_actor,
            region=regions[region_code],
            scheme=scheme,
            year=year,
            effective_from=effective_from,
            today=today,
            **values,
        )

    return factory


# --- Policy versions ---------------------------------------------------------------------


def test_a_first_policy_version_is_numbered_1_and_names_every_category(publish):
    policy = publish()
    assert policy.version == 1
    assert policy.ratio == Decimal("0.7500")
    assert set(policy.eligible_shares) == set(ServiceCategory.values)
    assert policy.eligible_shares["drug_b"] == "0.90"
    assert policy.eligible_shares["non_catalogue"] == "0.00"
    assert policy.eligible_shares["imaging"] == "1.00"
    assert policy.created_by == "tests"


def test_publishing_a_version_is_audited_with_the_version_it_follows(publish):
    first = publish()
    second = publish(effective_from=dt.date(2026, 7, 1), ratio="0.80")
    assert second.version == 2
    event = AuditEvent.objects.filter(action="policy.version_created", object_id=str(second.pk)).get()
    assert event.region_code == "310000"
    assert event.before["version"] == first.version
    assert event.after["ratio"] == "0.80"
    assert verify_chain() == []


def test_overridden_shares_are_merged_into_the_defaults(publish):
    policy = publish(eligible_shares={"drug_b": "0.85", "other": Decimal("0.1")})
    assert policy.eligible_shares["drug_b"] == "0.85"
    assert policy.eligible_shares["other"] == "0.10"
    assert policy.eligible_shares["drug_a"] == "1.00"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ratio": 0.75}, "ratio"),  # floats are refused: money and ratios are never float
        ({"ratio": "1.5"}, "ratio"),
        ({"ratio": "0.12345"}, "ratio"),
        ({"deductible_fen": -1}, "deductible_fen"),
        ({"annual_cap_fen": "100"}, "annual_cap_fen"),
        ({"eligible_shares": {"dentistry": "1.00"}}, "eligible_shares"),
        ({"eligible_shares": {"drug_b": "-0.1"}}, "eligible_shares.drug_b"),
        ({"premium_fen": 38000}, "premium_fen"),  # an employee policy has no premium
    ],
)
def test_bad_policy_numbers_are_validation_errors(publish, overrides, field):
    with pytest.raises(DomainError) as caught:
        publish(**overrides)
    assert caught.value.code == "validation_error"
    assert caught.value.extra["field"] == field
    assert not ReimbursementPolicy.objects.exists()


def test_a_resident_policy_requires_a_premium(publish):
    with pytest.raises(DomainError) as caught:
        publish(scheme="resident", premium_fen=None)
    assert caught.value.extra["field"] == "premium_fen"


def test_a_new_version_cannot_take_effect_in_the_past_or_before_the_one_it_follows(publish):
    publish(effective_from=dt.date(2026, 8, 1))
    with pytest.raises(DomainError):
        publish(effective_from=dt.date(2026, 6, 1))  # before today
    with pytest.raises(DomainError):
        publish(effective_from=dt.date(2026, 7, 1))  # before version 1's date
    assert publish(effective_from=dt.date(2026, 8, 1)).version == 2


def test_a_policy_version_cannot_be_changed_in_the_database(publish):
    policy = publish()
    with pytest.raises(DatabaseError), transaction.atomic():
        ReimbursementPolicy.objects.filter(pk=policy.pk).update(ratio=Decimal("0.9"))
    policy.refresh_from_db()
    assert policy.ratio == Decimal("0.7500")


def test_the_policy_in_force_is_the_latest_version_whose_date_has_passed(publish):
    publish(effective_from=dt.date(2026, 1, 1), today=dt.date(2025, 12, 1))
    second = publish(effective_from=dt.date(2026, 4, 1), ratio="0.78", today=dt.date(2026, 3, 1))
    publish(effective_from=dt.date(2026, 9, 1), ratio="0.80", today=dt.date(2026, 3, 1))
    assert catalogue.policy_in_force("310000", "employee", 2026, today=TODAY) == second
    assert catalogue.policy_in_force("310000", "employee", 2026, today=dt.date(2026, 9, 1)).version == 3


def test_a_future_year_answers_its_first_published_version(publish):
    first = publish(year=2027, effective_from=dt.date(2027, 1, 1))
    publish(year=2027, effective_from=dt.date(2027, 1, 1), ratio="0.80")
    assert catalogue.policy_in_force("310000", "employee", 2027, today=TODAY) == first


def test_no_policy_in_force_answers_none(publish):
    publish(effective_from=dt.date(2026, 7, 1))
    assert catalogue.policy_in_force("310000", "employee", 2026, today=TODAY) is None  # not yet effective
    assert catalogue.policy_in_force("310000", "resident", 2026, today=TODAY) is None  # other scheme
    assert catalogue.policy_in_force("440000", "employee", 2026, today=TODAY) is None  # other region
    assert catalogue.policy_in_force("310000", "employee", 2025, today=TODAY) is None  # other year


def test_policies_of_one_region_do_not_number_another_regions_versions(publish):
    publish()
    assert publish(region_code="440000").version == 1
    assert publish(scheme="resident").version == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.7"), "0.70"),
        (Decimal("0.7000"), "0.70"),
        (Decimal("1"), "1.00"),
        (Decimal("0"), "0.00"),
        (Decimal("0.725"), "0.725"),
        ("0.9", "0.90"),
        (Decimal("0.0001"), "0.0001"),
    ],
)
def test_ratios_and_shares_are_written_with_at_least_two_decimals(value, text):
    assert catalogue.decimal_string(value) == text


# --- Catalogue and facilities ------------------------------------------------------------------


def test_creating_and_updating_a_service_is_audited(db, system_actor):
    item = catalogue.service_create(
        actor=system_actor,
        code="250101015",
        name_zh="血常规",
        name_en="Complete blood count",
        category="lab_test",
        unit="次",
        max_unit_price_fen=2000,
    )
    catalogue.service_update(actor=system_actor, item=item, max_unit_price_fen=2200, active=False)
    item.refresh_from_db()
    assert (item.max_unit_price_fen, item.active) == (2200, False)
    actions = list(
        AuditEvent.objects.filter(object_type="service_item").order_by("seq").values_list("action", flat=True)
    )
    assert actions == ["service.created", "service.updated"]
    assert catalogue.services_listed().count() == 0


def test_a_duplicate_service_code_is_refused(db, system_actor):
    values = {
        "code": "110100001",
        "name_zh": "挂号费",
        "name_en": "Registration",
        "category": "registration",
        "unit": "次",
        "max_unit_price_fen": 100,
    }
    catalogue.service_create(actor=system_actor, **values)
    with pytest.raises(DomainError) as caught:
        catalogue.service_create(actor=system_actor, **values)
    assert caught.value.code == "service_exists"


def test_a_service_code_cannot_be_changed(db, system_actor):
    item = catalogue.service_create(
        actor=system_actor, code="X1", name_zh="甲", name_en="A", category="other", unit="次", max_unit_price_fen=1
    )
    with pytest.raises(DomainError):
        catalogue.service_update(actor=system_actor, item=item, code="X2")


def test_facilities_are_listed_by_region_and_audited_with_their_region(regions, system_actor):
    facility = catalogue.facility_create(
        actor=system_actor,
        code="H310000009",
        name_zh="医院",
        name_en="Hospital",
        kind="hospital",
        region=regions["310000"],
    )
    catalogue.facility_create(
        actor=system_actor,
        code="H440000009",
        name_zh="医院",
        name_en="Hospital",
        kind="hospital",
        region=regions["440000"],
    )
    assert list(catalogue.facilities_listed("310000")) == [facility]
    assert AuditEvent.objects.get(action="facility.created", object_id=str(facility.pk)).region_code == "310000"
    catalogue.facility_update(actor=system_actor, facility=facility, active=False)
    assert not catalogue.facilities_listed("310000").exists()
    with pytest.raises(DomainError):
        catalogue.facility_create(
            actor=system_actor, code="C1", name_zh="诊所", name_en="Clinic", kind="spa", region=regions["310000"]
        )


# --- Demo data ---------------------------------------------------------------------------------


def test_the_demo_catalogue_has_every_category_facility_kind_and_policy(regions):
    report = seed_catalogue(today=TODAY)
    assert set(ServiceItem.objects.values_list("category", flat=True)) == set(ServiceCategory.values)
    assert ServiceItem.objects.filter(name_zh__contains="血常规").exists()
    assert ServiceItem.objects.filter(name_zh__contains="CT", category="imaging").exists()
    for code in FACILITIES:
        assert set(Facility.objects.filter(region_id=code).values_list("kind", flat=True)) == {
            "hospital",
            "clinic",
            "pharmacy",
        }
        for year in (2026, 2027):
            employee = catalogue.policy_in_force(code, "employee", year, today=TODAY)
            resident = catalogue.policy_in_force(code, "resident", year, today=TODAY)
            assert employee is not None and employee.premium_fen is None
            assert resident is not None and resident.premium_fen > 0
    assert report.policies_created == 7 * 2 * 2
    assert report.facilities_created == 7 * 3


def test_seeding_the_demo_catalogue_twice_changes_nothing(regions):
    seed_catalogue(today=TODAY)
    events = AuditEvent.objects.count()
    counts = (ServiceItem.objects.count(), Facility.objects.count(), ReimbursementPolicy.objects.count())
    report = seed_catalogue(today=TODAY)
    assert (report.services_created, report.facilities_created, report.policies_created) == (0, 0, 0)
    assert (ServiceItem.objects.count(), Facility.objects.count(), ReimbursementPolicy.objects.count()) == counts
    assert AuditEvent.objects.count() == events


def test_demo_prices_and_numbers_are_integer_fen(regions):
    seed_catalogue(today=TODAY)
    assert all(isinstance(p, int) and p > 0 for p in ServiceItem.objects.values_list("max_unit_price_fen", flat=True))
    assert (
        ReimbursementPolicy.objects.get(region_id="370000", scheme="employee", year=2026).eligible_shares["drug_b"]
        == "0.85"
    )


def test_a_stored_policy_feeds_the_split_with_decimal_shares_and_ratio(regions):
    from insurance.reimbursement import BillLine, PolicyTerms, compute_split

    seed_catalogue(today=TODAY)
    policy = catalogue.policy_in_force("370000", "employee", 2026, today=TODAY)
    terms = PolicyTerms.of(policy)
    assert terms.ratio == Decimal("0.75") and terms.eligible_shares["drug_b"] == Decimal("0.85")
    atorvastatin = ServiceItem.objects.get(code="XC10AAA050B001")
    result = compute_split(
        lines=[BillLine(atorvastatin.category, 20, 3000, atorvastatin.max_unit_price_fen, atorvastatin.code)],
        policy=terms,
        deductible_used_fen=30000,
        fund_used_fen=0,
        account_balance_fen=5000,
        use_personal_account=True,
    )
    # 60000 x 0.85 = 51000 eligible; deductible used up; 51000 x 0.75 = 38250 from the fund; 5000 from the account.
    assert (result.eligible_fen, result.fund_fen, result.account_fen, result.self_pay_fen) == (
        51000,
        38250,
        5000,
        16750,
    )
