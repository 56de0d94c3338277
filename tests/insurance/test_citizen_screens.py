"""Citizen search, registration, editing, detail and status change screens."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backoffice.navigation import menu_counts
from insurance.models import CertificateState, Citizen, CitizenStatus
from portal.models import AuditEvent, Role
from testkit.citizens import new_id_number
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk(client, make_user):
    user = make_user(Role.CLERK, ("310000",))
    sign_in(client, user)
    return user


def search(client, q: str = "", page: int | None = None, **filters):
    """Submit the search box (POST, redirected to a GET carrying a token) and open the page."""
    response = client.post(reverse("citizen_search"), {"q": q, **filters})
    assert response.status_code == 302
    location = response["Location"] + (f"&page={page}" if page else "")
    return client.get(location)


def test_search_finds_a_citizen_by_exact_identity_number_and_shows_it_masked(
    client, clerk, make_citizen, regions, system_actor
):
    from insurance import services

    number = new_id_number("310000")
    citizen = services.citizen_register(
        actor=system_actor,
        id_number=number,
        name="王小明",
        phone="13900001111",
        region=regions["310000"],
        scheme="employee",
    )
    make_citizen("310000", name="王大明")
    response = search(client, q=number.lower())
    body = response.content.decode()
    assert list(response.context["page"]) == [citizen]
    assert number not in body
    assert citizen.id_number_masked in body
    assert "王*明" in body
    assert "王小明" not in body
    assert "13900001111" not in body
    assert "139****1111" in body


def test_an_identity_number_search_never_puts_the_number_in_a_url(client, clerk, make_citizen):
    citizen = make_citizen("310000")
    response = client.post(reverse("citizen_search"), {"q": citizen.id_number})
    assert citizen.id_number not in response["Location"]
    page = client.get(response["Location"])
    assert citizen.id_number not in page.content.decode()
    assert list(page.context["page"]) == [citizen]


def test_search_finds_a_citizen_by_exact_phone(client, clerk, make_citizen):
    wanted = make_citizen("310000", phone="13711112222")
    make_citizen("310000", phone="13711112223")
    assert list(search(client, q="13711112222").context["page"]) == [wanted]
    assert list(search(client, q="1371111222").context["page"]) == []  # exact, not a prefix


def test_search_matches_a_name_prefix_and_filters(client, clerk, make_citizen, system_actor):
    from insurance import services

    zhang_resident = make_citizen("310000", name="张伟", scheme="resident")
    zhang_employee = make_citizen("310000", name="张敏", scheme="employee")
    make_citizen("310000", name="李张")
    assert set(search(client, q="张").context["page"]) == {zhang_resident, zhang_employee}
    assert list(search(client, q="张", scheme="employee").context["page"]) == [zhang_employee]
    services.citizen_set_status(actor=system_actor, citizen=zhang_resident, status="deceased", reason="test")
    assert list(search(client, q="张", status="deceased").context["page"]) == [zhang_resident]


def test_search_never_lists_another_regions_citizens(client, clerk, make_citizen):
    from insurance import services

    own = make_citizen("310000", name="赵一")
    other = make_citizen("440000", name="赵二", phone="13600000000")
    assert list(search(client, q="赵").context["page"]) == [own]
    assert list(search(client, q="13600000000").context["page"]) == []
    refused = client.post(reverse("citizen_search"), {"region": "440000"})  # not one of the clerk's choices
    assert refused.status_code == 200 and "region" in refused.context["form"].errors
    assert list(client.get(reverse("citizen_search"), {"region": "440000"}).context["page"]) == [own]
    assert services.find_citizen_id_by_id_number(other.id_number) == other.pk


def test_search_pages_by_25_with_a_fixed_number_of_queries(client, clerk, make_citizen, django_assert_max_num_queries):
    for _ in range(30):
        make_citizen("310000", name="钱多多")
    location = client.post(reverse("citizen_search"), {"q": "钱"})["Location"]
    with CaptureQueriesContext(connection) as menu:  # the menu's counts, on every page
        menu_counts(clerk)
    limit = 8 + len(menu.captured_queries)
    with django_assert_max_num_queries(limit):
        first = client.get(location)
    with django_assert_max_num_queries(limit):
        second = client.get(location + "&page=2")
    assert len(first.context["page"]) == 25
    assert len(second.context["page"]) == 5
    assert first.context["page"].paginator.count == 30


def test_clerk_registers_a_citizen(client, clerk):
    number = new_id_number("310000")
    response = client.post(
        reverse("citizen_register"),
        {
            "id_number": number,
            "name": "孙悟空",
            "phone": "138 0000 1234",
            "region": "310000",
            "scheme": "resident",
        },
    )
    citizen = Citizen.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("citizen_detail", args=[citizen.pk])
    assert citizen.id_number == number
    assert citizen.phone == "13800001234"
    assert AuditEvent.objects.filter(action="citizen.register", object_id=str(citizen.pk)).exists()


@pytest.mark.parametrize(
    "data, field",
    [
        ({"id_number": "310101195001011234"}, "id_number"),  # wrong check character
        ({"id_number": "12345"}, "id_number"),
        ({"name": "   "}, "name"),
        ({"phone": "call me"}, "phone"),
        ({"region": "440000"}, "region"),  # not the clerk's region
        ({"scheme": "gold"}, "scheme"),
    ],
)
def test_register_form_rejects_bad_input_with_a_field_error(client, clerk, data, field):
    payload = {
        "id_number": new_id_number("310000"),
        "name": "孙悟空",
        "phone": "",
        "region": "310000",
        "scheme": "resident",
        **data,
    }
    response = client.post(reverse("citizen_register"), payload)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not Citizen.objects.exists()


def test_register_error_messages_are_in_chinese_by_default_and_english_on_request(client, clerk):
    payload = {"id_number": "310101195001011234", "name": "x", "region": "310000", "scheme": "resident"}
    assert "校验码错误" in client.post(reverse("citizen_register"), payload).content.decode()
    client.cookies["django_language"] = "en"
    assert "check character is wrong" in client.post(reverse("citizen_register"), payload).content.decode()


def test_registering_a_known_identity_number_is_a_form_error_from_the_service(client, clerk, make_citizen):
    existing = make_citizen("440000")  # even in another region: numbers are national
    payload = {"id_number": existing.id_number, "name": "某人", "region": "310000", "scheme": "resident"}
    response = client.post(reverse("citizen_register"), payload)
    assert response.status_code == 200
    assert "已有参保登记，不能重复登记" in str(response.context["form"].errors["id_number"])
    assert Citizen.objects.count() == 1


def test_auditor_cannot_open_write_screens(client, make_user, make_citizen):
    citizen = make_citizen("310000")
    sign_in(client, make_user(Role.AUDITOR, ("310000",)))
    assert client.get(reverse("citizen_detail", args=[citizen.pk])).status_code == 200
    assert client.get(reverse("citizen_register")).status_code == 403
    assert (
        client.post(reverse("citizen_edit", args=[citizen.pk]), {"name": "改名", "scheme": "resident"}).status_code
        == 403
    )
    assert (
        client.post(
            reverse("citizen_status", args=[citizen.pk]), {"status": "deceased", "reason": "x", "confirmed": "yes"}
        ).status_code
        == 403
    )
    citizen.refresh_from_db()
    assert citizen.name == "张三明" and citizen.status == CitizenStatus.ACTIVE


def test_clerk_edits_a_citizen(client, clerk, make_citizen):
    citizen = make_citizen("310000", phone="13800000000")
    form = client.get(reverse("citizen_edit", args=[citizen.pk]))
    assert form.status_code == 200
    response = client.post(
        reverse("citizen_edit", args=[citizen.pk]), {"name": "张三丰", "phone": "13911112222", "scheme": "employee"}
    )
    assert response.status_code == 302
    citizen.refresh_from_db()
    assert (citizen.name, citizen.phone, citizen.scheme) == ("张三丰", "13911112222", "employee")
    assert AuditEvent.objects.filter(action="citizen.update", object_id=str(citizen.pk)).exists()


def test_edit_form_rejects_an_empty_name(client, clerk, make_citizen):
    citizen = make_citizen("310000")
    response = client.post(reverse("citizen_edit", args=[citizen.pk]), {"name": "", "scheme": "resident"})
    assert response.status_code == 200
    assert "name" in response.context["form"].errors
    citizen.refresh_from_db()
    assert citizen.name == "张三明"


def test_detail_shows_masked_data_card_history_and_audit_trail(client, clerk, make_citizen):
    citizen = make_citizen("310000", name="周杰伦", phone="13512345678", with_card=True)
    response = client.get(reverse("citizen_detail", args=[citizen.pk]))
    body = response.content.decode()
    card = citizen.certificates.get()
    assert response.status_code == 200
    assert citizen.id_number not in body and "周杰伦" not in body and "13512345678" not in body
    assert "周*伦" in body and citizen.id_number_masked in body
    assert card.number in body
    events = {e.action for e in response.context["audit_events"]}
    assert {"citizen.register", "certificate.issue"} <= events


def test_opening_a_citizen_is_recorded_for_the_auditors_but_kept_out_of_the_trail(client, clerk, make_citizen):
    """PIPL access records: who opened which citizen's personal data, and from where."""
    citizen = make_citizen("310000", with_card=True)
    client.get(reverse("citizen_detail", args=[citizen.pk]))
    response = client.get(reverse("citizen_detail", args=[citizen.pk]), REMOTE_ADDR="10.1.2.3")
    views = AuditEvent.objects.filter(action="citizen.view", object_type="citizen", object_id=str(citizen.pk))
    assert views.count() == 2
    last = views.order_by("-seq").first()
    assert (last.actor_id, last.region_code, last.source_ip) == (str(clerk.pk), "310000", "10.1.2.3")
    assert "citizen.view" not in {e.action for e in response.context["audit_events"]}


def test_opening_another_regions_citizen_records_nothing(client, clerk, make_citizen):
    citizen = make_citizen("440000")
    assert client.get(reverse("citizen_detail", args=[citizen.pk])).status_code == 404
    assert not AuditEvent.objects.filter(action="citizen.view").exists()


def test_status_change_needs_a_confirmation_and_then_revokes_cards(client, clerk, make_citizen):
    citizen = make_citizen("310000", with_card=True)
    url = reverse("citizen_status", args=[citizen.pk])
    step1 = client.post(url, {"status": "deceased", "reason": "死亡证明 123"})
    assert step1.status_code == 200
    assert step1.context["step"] == "confirm"
    assert citizen.certificates.get().number in step1.content.decode()
    citizen.refresh_from_db()
    assert citizen.status == CitizenStatus.ACTIVE

    done = client.post(url, {"status": "deceased", "reason": "死亡证明 123", "confirmed": "yes"})
    assert done.status_code == 302
    citizen.refresh_from_db()
    assert citizen.status == CitizenStatus.DECEASED
    assert citizen.certificates.get().state == CertificateState.REVOKED


def test_status_change_without_a_reason_changes_nothing(client, clerk, make_citizen):
    citizen = make_citizen("310000")
    response = client.post(
        reverse("citizen_status", args=[citizen.pk]), {"status": "moved_out", "reason": "  ", "confirmed": "yes"}
    )
    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    citizen.refresh_from_db()
    assert citizen.status == CitizenStatus.ACTIVE


def _resubmit(client, page, **changes):
    """Press 查询 again as a browser would: the form posts its fields to the page's own URL."""
    body = page.content.decode()
    data = {"q": page.context["form"]["q"].value() or "", **changes}
    hidden = re.search(r'<input type="hidden" name="s" value="([^"]*)"', body)
    if hidden:
        data["s"] = hidden.group(1)
    response = client.post(page.request["PATH_INFO"] + "?" + page.request["QUERY_STRING"], data)
    assert response.status_code == 302
    return client.get(response["Location"])


def test_refining_an_identity_number_search_by_scheme_searches_the_number_not_its_masked_text(
    client, clerk, make_citizen
):
    wanted = make_citizen("310000", scheme="resident")
    page = search(client, q=wanted.id_number)
    assert list(page.context["page"]) == [wanted]
    assert not page.context["form"]["q"].value()  # the box is empty, never the masked number
    assert wanted.id_number_masked in page.content.decode()  # the note says what is searched
    assert list(_resubmit(client, page, scheme="resident").context["page"]) == [wanted]
    assert list(_resubmit(client, page, scheme="employee").context["page"]) == []


def test_a_new_text_in_the_box_replaces_the_remembered_number(client, clerk, make_citizen):
    first = make_citizen("310000", name="李四明")
    second = make_citizen("310000", name="赵五明")
    page = search(client, q=first.id_number)
    assert list(_resubmit(client, page, q=second.id_number).context["page"]) == [second]
    cleared = client.get(page.context["clear_search_url"])
    assert set(cleared.context["page"]) == {first, second}
