"""Service catalogue and facility screens: lists, editing, deactivation, roles and scope."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from insurance import catalogue
from insurance.forms_catalogue import yuan_to_fen
from insurance.models import Facility, ServiceItem
from portal.models import AuditEvent, Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_role(client, make_user):
    def factory(role: str, region_codes: tuple[str, ...] = ("310000",)):
        user = make_user(role, region_codes)
        sign_in(client, user)
        return user

    return factory


@pytest.fixture
def service(system_actor, regions):
    return catalogue.service_create(
        actor=system_actor,
        code="REG001",
        name_zh="普通挂号",
        name_en="Registration",
        category="registration",
        unit="次",
        max_unit_price_fen=1250,
    )


@pytest.fixture
def facility(system_actor, regions):
    return catalogue.facility_create(
        actor=system_actor,
        code="SH-H1",
        name_zh="瑞金医院",
        name_en="Ruijin Hospital",
        kind="hospital",
        region=regions["310000"],
    )


@pytest.fixture
def other_facility(system_actor, regions):
    return catalogue.facility_create(
        actor=system_actor,
        code="GD-H1",
        name_zh="中山医院",
        name_en="Zhongshan Hospital",
        kind="hospital",
        region=regions["440000"],
    )


SERVICE_POST = {
    "code": "LAB009",
    "name_zh": "血常规",
    "name_en": "Blood count",
    "category": "lab_test",
    "unit": "次",
    "max_unit_price_fen": "23.50",
}


# --- Money -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0", 0),
        ("12", 1200),
        ("12.5", 1250),
        ("12.05", 1205),
        ("0.01", 1),
        ("1,234.56", 123456),
        ("99999999.99", 9999999999),
    ],
)
def test_yuan_text_converts_to_exact_fen(text, fen):
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["-1", "1.234", "1e3", "abc", "", "0.1.2", "NaN"])
def test_yuan_text_that_is_not_an_amount_is_refused(text):
    with pytest.raises(ValueError):
        yuan_to_fen(text)


def test_fen_are_shown_as_yuan_with_two_decimals():
    assert catalogue.format_yuan(0) == "0.00"
    assert catalogue.format_yuan(5) == "0.05"
    assert catalogue.format_yuan(123456) == "1234.56"
    assert catalogue.format_yuan(10**12 + 1) == "10000000000.01"


# --- Catalogue ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.CLERK, Role.AUDITOR])
def test_every_staff_role_can_read_the_catalogue_with_prices_in_yuan(client, as_role, service, role):
    as_role(role)
    response = client.get(reverse("catalogue_list"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "REG001" in body and "12.50" in body


def test_catalogue_list_filters_by_category_state_and_text_and_sorts_by_price(client, as_role, system_actor, service):
    as_role(Role.CLERK)
    lab = catalogue.service_create(
        actor=system_actor,
        code="LAB001",
        name_zh="血糖",
        name_en="Glucose",
        category="lab_test",
        unit="次",
        max_unit_price_fen=900,
    )
    old = catalogue.service_create(
        actor=system_actor,
        code="LAB002",
        name_zh="旧检查",
        name_en="Old test",
        category="lab_test",
        unit="次",
        max_unit_price_fen=5000,
    )
    catalogue.service_set_active(actor=system_actor, item=old, active=False)
    url = reverse("catalogue_list")
    assert list(client.get(url, {"category": "lab_test"}).context["page"]) == [lab, old]
    assert list(client.get(url, {"category": "lab_test", "active": "yes"}).context["page"]) == [lab]
    assert list(client.get(url, {"q": "glucose"}).context["page"]) == [lab]
    assert list(client.get(url, {"q": "reg0"}).context["page"]) == [service]
    assert list(client.get(url, {"sort": "-price"}).context["page"]) == [old, service, lab]


def test_catalogue_list_paginates_with_a_fixed_number_of_queries(client, as_role, system_actor):
    as_role(Role.CLERK)
    for n in range(30):
        catalogue.service_create(
            actor=system_actor,
            code=f"S{n:03d}",
            name_zh="项目",
            name_en="Item",
            category="other",
            unit="次",
            max_unit_price_fen=n,
        )
    url = reverse("catalogue_list")
    first = client.get(url)
    assert len(first.context["page"]) == 25
    assert list(client.get(url, {"page": 2}).context["page"])[-1].code == "S029"
    with CaptureQueriesContext(connection) as few:
        client.get(url, {"page": 2})
    for n in range(30, 60):
        catalogue.service_create(
            actor=system_actor,
            code=f"S{n:03d}",
            name_zh="项目",
            name_en="Item",
            category="other",
            unit="次",
            max_unit_price_fen=n,
        )
    with CaptureQueriesContext(connection) as many:
        client.get(url, {"page": 2})
    assert len(many) == len(few)


def test_national_operator_adds_a_service_priced_in_yuan_and_it_is_audited(client, as_role):
    as_role(Role.NATIONAL_OPERATOR)
    response = client.post(reverse("catalogue_create"), SERVICE_POST)
    assert response.status_code == 302
    item = ServiceItem.objects.get(code="LAB009")
    assert item.max_unit_price_fen == 2350
    assert AuditEvent.objects.filter(action="service.created", object_id=str(item.pk)).exists()


@pytest.mark.parametrize("price", ["-1", "1.234", "abc", "1e3"])
def test_a_bad_price_is_a_form_error_and_nothing_is_saved(client, as_role, price):
    as_role(Role.NATIONAL_OPERATOR)
    response = client.post(reverse("catalogue_create"), {**SERVICE_POST, "max_unit_price_fen": price})
    assert response.status_code == 200
    assert [e.code for e in response.context["form"].errors.as_data()["max_unit_price_fen"]] == ["invalid_yuan"]
    assert "非负金额" in response.content.decode()
    assert not ServiceItem.objects.filter(code="LAB009").exists()


def test_a_duplicate_service_code_is_a_form_error(client, as_role, service):
    as_role(Role.NATIONAL_OPERATOR)
    response = client.post(reverse("catalogue_create"), {**SERVICE_POST, "code": "REG001"})
    assert response.status_code == 200
    assert response.context["form"].errors
    assert ServiceItem.objects.get(code="REG001").name_en == "Registration"


def test_national_operator_edits_a_service_and_its_code_stays(client, as_role, service):
    as_role(Role.NATIONAL_OPERATOR)
    edit = reverse("catalogue_edit", args=[service.pk])
    assert 'value="12.50"' in client.get(edit).content.decode()
    response = client.post(edit, {**SERVICE_POST, "code": "HACKED", "max_unit_price_fen": "15"})
    assert response.status_code == 302
    service.refresh_from_db()
    assert (service.code, service.name_en, service.max_unit_price_fen) == ("REG001", "Blood count", 1500)


def test_deactivation_asks_for_confirmation_then_deactivates_and_reactivates(client, as_role, service):
    as_role(Role.NATIONAL_OPERATOR)
    url = reverse("catalogue_toggle", args=[service.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, {}).status_code == 200  # no confirmation: only the question again
    service.refresh_from_db()
    assert service.active
    assert client.post(url, {"confirmed": "yes"}).status_code == 302
    service.refresh_from_db()
    assert not service.active
    client.post(url, {"confirmed": "yes"})
    service.refresh_from_db()
    assert service.active
    assert AuditEvent.objects.filter(action="service.updated", object_id=str(service.pk)).count() == 2


@pytest.mark.parametrize("role", [Role.REGION_ADMIN, Role.CLERK, Role.AUDITOR])
def test_only_national_operators_may_change_the_catalogue(client, as_role, service, role):
    as_role(role)
    assert client.get(reverse("catalogue_create")).status_code == 403
    assert client.post(reverse("catalogue_create"), SERVICE_POST).status_code == 403
    assert client.post(reverse("catalogue_edit", args=[service.pk]), SERVICE_POST).status_code == 403
    assert client.post(reverse("catalogue_toggle", args=[service.pk]), {"confirmed": "yes"}).status_code == 403
    assert client.get(reverse("catalogue_import")).status_code == 403
    service.refresh_from_db()
    assert service.active and service.name_en == "Registration"
    assert not ServiceItem.objects.filter(code="LAB009").exists()


def test_signed_out_visitors_are_sent_to_sign_in(client, service):
    response = client.get(reverse("catalogue_list"))
    assert response.status_code == 302
    assert "/accounts/" in response["Location"]


# --- Facilities ------------------------------------------------------------------------------


def test_a_clerk_sees_only_the_facilities_of_their_region(client, as_role, facility, other_facility):
    as_role(Role.CLERK, ("310000",))
    response = client.get(reverse("facility_list"))
    assert list(response.context["page"]) == [facility]
    assert "GD-H1" not in response.content.decode()
    assert not response.context["can_edit"]


def test_a_national_operator_sees_every_region_and_filters_by_region(client, as_role, facility, other_facility):
    as_role(Role.NATIONAL_OPERATOR)
    url = reverse("facility_list")
    assert set(client.get(url).context["page"]) == {facility, other_facility}
    assert list(client.get(url, {"region": "440000"}).context["page"]) == [other_facility]


def test_a_region_admin_adds_a_facility_in_their_region(client, as_role):
    as_role(Role.REGION_ADMIN, ("310000",))
    response = client.post(
        reverse("facility_create"),
        {"code": "SH-P9", "name_zh": "药房", "name_en": "Pharmacy 9", "kind": "pharmacy", "region": "310000"},
    )
    assert response.status_code == 302
    created = Facility.objects.get(code="SH-P9")
    assert created.region_id == "310000"
    assert AuditEvent.objects.filter(action="facility.created", region_code="310000").exists()


def test_a_region_admin_cannot_add_a_facility_in_another_region(client, as_role):
    as_role(Role.REGION_ADMIN, ("310000",))
    response = client.post(
        reverse("facility_create"),
        {"code": "GD-P9", "name_zh": "药房", "name_en": "Pharmacy 9", "kind": "pharmacy", "region": "440000"},
    )
    assert response.status_code == 200
    assert "region" in response.context["form"].errors
    assert not Facility.objects.filter(code="GD-P9").exists()


def test_a_region_admin_edits_and_deactivates_a_facility_of_their_region(client, as_role, facility):
    as_role(Role.REGION_ADMIN, ("310000",))
    response = client.post(
        reverse("facility_edit", args=[facility.pk]),
        {"name_zh": "瑞金医院", "name_en": "Ruijin", "kind": "clinic", "region": "440000"},
    )
    assert response.status_code == 302
    facility.refresh_from_db()
    assert (facility.name_en, facility.kind, facility.region_id) == ("Ruijin", "clinic", "310000")
    client.post(reverse("facility_toggle", args=[facility.pk]), {"confirmed": "yes"})
    facility.refresh_from_db()
    assert not facility.active


def test_another_regions_facility_answers_404_on_every_screen(client, as_role, other_facility):
    as_role(Role.REGION_ADMIN, ("310000",))
    assert client.get(reverse("facility_edit", args=[other_facility.pk])).status_code == 404
    assert (
        client.post(
            reverse("facility_edit", args=[other_facility.pk]), {"name_zh": "x", "name_en": "x", "kind": "clinic"}
        ).status_code
        == 404
    )
    assert client.post(reverse("facility_toggle", args=[other_facility.pk]), {"confirmed": "yes"}).status_code == 404
    other_facility.refresh_from_db()
    assert other_facility.active and other_facility.name_en == "Zhongshan Hospital"


@pytest.mark.parametrize("role", [Role.CLERK, Role.AUDITOR])
def test_clerks_and_auditors_may_not_change_facilities(client, as_role, facility, role):
    as_role(role, ("310000",))
    assert client.get(reverse("facility_create")).status_code == 403
    assert (
        client.post(
            reverse("facility_edit", args=[facility.pk]), {"name_zh": "x", "name_en": "x", "kind": "clinic"}
        ).status_code
        == 403
    )
    assert client.post(reverse("facility_toggle", args=[facility.pk]), {"confirmed": "yes"}).status_code == 403
    assert client.get(reverse("facility_import")).status_code == 403
    facility.refresh_from_db()
    assert facility.active and facility.name_en == "Ruijin Hospital"


def test_the_screens_are_translated_into_chinese_by_default(client, as_role, service):
    as_role(Role.NATIONAL_OPERATOR)
    body = client.get(reverse("catalogue_list")).content.decode()
    assert "服务目录" in body


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_every_catalogue_facility_and_policy_page_renders_for_a_national_operator(
    client, as_role, service, facility, language, settings
):
    as_role(Role.NATIONAL_OPERATOR, ())
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    year = catalogue.shanghai_today().year
    urls = [
        reverse("catalogue_list"),
        reverse("catalogue_create"),
        reverse("catalogue_edit", args=[service.pk]),
        reverse("catalogue_toggle", args=[service.pk]),
        reverse("catalogue_import"),
        reverse("facility_list"),
        reverse("facility_create"),
        reverse("facility_edit", args=[facility.pk]),
        reverse("facility_toggle", args=[facility.pk]),
        reverse("facility_import"),
        reverse("policy_index"),
        reverse("policy_versions", args=["310000", "employee", year]),
        reverse("policy_new_version", args=["310000", "employee", year]),
        reverse("policy_new_version", args=["310000", "resident", year]),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
    expected = "Service catalogue" if language == "en" else "服务目录"
    assert expected in client.get(reverse("catalogue_list")).content.decode()


def test_the_policy_index_opens_the_chosen_region_scheme_and_year(client, as_role):
    as_role(Role.REGION_ADMIN, ("310000",))
    response = client.get(reverse("policy_index"), {"region": "310000", "scheme": "resident", "year": "2027"})
    assert response.status_code == 302
    assert response["Location"] == reverse("policy_versions", args=["310000", "resident", 2027])
    outside = client.get(reverse("policy_index"), {"region": "440000", "scheme": "resident", "year": "2027"})
    assert outside.status_code == 200
    assert "region" in outside.context["form"].errors
