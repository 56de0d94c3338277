"""A clerk, a region administrator and an auditor of another region get 404 for
this region's citizens, cards and linkages, through every screen and action."""

import pytest
from django.urls import reverse

from insurance.models import CertificateState, CitizenStatus
from payments.linkages import services as payment_services
from payments.models import LinkageState
from portal.models import Role
from testkit.screens import make_partner, sign_in

pytestmark = pytest.mark.django_db

OUTSIDERS = [Role.CLERK, Role.REGION_ADMIN, Role.AUDITOR]


@pytest.fixture
def shanghai(make_citizen, system_actor):
    """A Shanghai citizen with an active card and a wallet linkage."""
    citizen = make_citizen("310000", name="沈一", phone="13800138000", with_card=True)
    linkage = payment_services.linkage_create(
        actor=system_actor, partner=make_partner(), citizen=citizen, partner_user_ref="wx-1"
    )
    return citizen, citizen.certificates.get(), linkage


def urls(citizen, card, linkage) -> list[str]:
    return [
        reverse("citizen_detail", args=[citizen.pk]),
        reverse("citizen_edit", args=[citizen.pk]),
        reverse("citizen_status", args=[citizen.pk]),
        reverse("certificate_issue", args=[citizen.pk]),
        *(reverse("certificate_action", args=[card.pk, a]) for a in ("suspend", "reinstate", "revoke", "reissue")),
        reverse("linkage_unlink", args=[linkage.public_id]),
    ]


@pytest.mark.parametrize("role", OUTSIDERS)
def test_outsider_gets_404_on_every_screen_and_action(client, make_user, shanghai, role):
    citizen, card, linkage = shanghai
    sign_in(client, make_user(role, ("440000",)))
    payload = {
        "reason": "x",
        "note": "x",
        "status": "deceased",
        "name": "改",
        "scheme": "resident",
        "partner": linkage.partner_id,
        "partner_user_ref": "wx-2",
        "confirmed": "yes",
    }
    for url in urls(citizen, card, linkage):
        assert client.get(url).status_code == 404, url
        assert client.post(url, payload).status_code == 404, url
    citizen.refresh_from_db()
    card.refresh_from_db()
    linkage.refresh_from_db()
    assert (citizen.status, citizen.name) == (CitizenStatus.ACTIVE, "沈一")
    assert card.state == CertificateState.ACTIVE
    assert linkage.state == LinkageState.ACTIVE
    assert citizen.certificates.count() == 1


@pytest.mark.parametrize("role", OUTSIDERS)
def test_outsider_search_finds_nothing_of_another_region(client, make_user, shanghai, role):
    citizen, _card, _linkage = shanghai
    sign_in(client, make_user(role, ("440000",)))
    for q in (citizen.id_number, "13800138000", "沈", ""):
        location = client.post(reverse("citizen_search"), {"q": q})["Location"]
        assert list(client.get(location).context["page"]) == [], q


@pytest.mark.parametrize("role", OUTSIDERS)
def test_insider_of_the_region_can_open_the_citizen(client, make_user, shanghai, role):
    citizen, _card, linkage = shanghai
    sign_in(client, make_user(role, ("310000",)))
    body = client.get(reverse("citizen_detail", args=[citizen.pk])).content.decode()
    assert "wx-1" in body
    location = client.post(reverse("citizen_search"), {"q": citizen.id_number})["Location"]
    assert list(client.get(location).context["page"]) == [citizen]


def test_national_operator_sees_every_region(client, make_user, shanghai):
    citizen, _card, _linkage = shanghai
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    assert client.get(reverse("citizen_detail", args=[citizen.pk])).status_code == 200
