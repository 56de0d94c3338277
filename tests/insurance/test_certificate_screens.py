"""Every e-card action: a reason, a confirmation step, then the service."""

import pytest
from django.urls import reverse

from insurance import services
from insurance.models import Certificate, CertificateState, CertificateTransition
from portal.models import AuditEvent, Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk(client, make_user):
    user = make_user(Role.CLERK, ("310000",))
    sign_in(client, user)
    return user


def active_card(make_citizen, system_actor) -> Certificate:
    citizen = make_citizen("310000", with_card=True)
    return services.certificate_activate(actor=system_actor, certificate=citizen.certificates.get())


def act(client, card, action, reason="窗口申请", confirmed=True):
    data = {"reason": reason}
    if confirmed:
        data["confirmed"] = "yes"
    return client.post(reverse("certificate_action", args=[card.pk, action]), data)


def test_issue_asks_for_a_reason_then_a_confirmation(client, clerk, make_citizen):
    citizen = make_citizen("310000")
    url = reverse("certificate_issue", args=[citizen.pk])
    assert client.get(url).context["step"] == "form"
    step2 = client.post(url, {"reason": "首次申领"})
    assert step2.status_code == 200 and step2.context["step"] == "confirm"
    assert not citizen.certificates.exists()
    done = client.post(url, {"reason": "首次申领", "confirmed": "yes"})
    assert done.status_code == 302
    card = citizen.certificates.get()
    assert card.state == CertificateState.PENDING_ACTIVATION
    assert card.transitions.get().reason == "首次申领"


def test_issue_without_a_reason_writes_nothing(client, clerk, make_citizen):
    citizen = make_citizen("310000")
    response = client.post(reverse("certificate_issue", args=[citizen.pk]), {"reason": " ", "confirmed": "yes"})
    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert not citizen.certificates.exists()


def test_issuing_a_second_live_card_is_refused_with_a_message(client, clerk, make_citizen):
    citizen = make_citizen("310000", with_card=True)
    response = client.post(reverse("certificate_issue", args=[citizen.pk]), {"reason": "再次", "confirmed": "yes"})
    assert response.status_code == 200
    assert "未注销且未过期" in response.content.decode()
    assert citizen.certificates.count() == 1


@pytest.mark.parametrize(
    "action, start, expected",
    [
        ("suspend", "active", CertificateState.SUSPENDED),
        ("reinstate", "suspended", CertificateState.ACTIVE),
        ("revoke", "active", CertificateState.REVOKED),
        ("revoke", "pending", CertificateState.REVOKED),
    ],
)
def test_each_action_changes_the_card_only_after_confirmation(
    client, clerk, make_citizen, system_actor, action, start, expected
):
    if start == "pending":
        card = make_citizen("310000", with_card=True).certificates.get()
    else:
        card = active_card(make_citizen, system_actor)
    if start == "suspended":
        card = services.certificate_suspend(actor=system_actor, certificate=card, reason="test")
    before = card.state
    page = client.get(reverse("certificate_action", args=[card.pk, action]))
    assert page.status_code == 200
    unconfirmed = act(client, card, action, confirmed=False)
    assert unconfirmed.status_code == 200 and unconfirmed.context["step"] == "confirm"
    card.refresh_from_db()
    assert card.state == before
    assert act(client, card, action).status_code == 302
    card.refresh_from_db()
    assert card.state == expected
    assert AuditEvent.objects.filter(action=f"certificate.{action}", object_id=card.number, reason="窗口申请").exists()


def test_reissue_replaces_the_card_after_confirmation(client, clerk, make_citizen, system_actor):
    card = active_card(make_citizen, system_actor)
    assert act(client, card, "reissue", confirmed=False).context["step"] == "confirm"
    assert Certificate.objects.filter(citizen=card.citizen).count() == 1
    assert act(client, card, "reissue").status_code == 302
    card.refresh_from_db()
    new = Certificate.objects.get(previous=card)
    assert card.state == CertificateState.REVOKED
    assert new.state == CertificateState.ACTIVE


def test_an_action_the_card_does_not_allow_is_refused_and_writes_nothing(client, clerk, make_citizen, system_actor):
    card = make_citizen("310000", with_card=True).certificates.get()  # pending activation
    transitions = CertificateTransition.objects.count()
    response = act(client, card, "suspend")
    assert response.status_code == 302
    card.refresh_from_db()
    assert card.state == CertificateState.PENDING_ACTIVATION
    assert CertificateTransition.objects.count() == transitions
    follow = client.get(response["Location"])
    assert "不能进行此操作" in follow.content.decode()


def test_an_unknown_action_is_not_found(client, clerk, make_citizen, system_actor):
    card = active_card(make_citizen, system_actor)
    assert client.get(reverse("certificate_action", args=[card.pk, "activate"])).status_code == 404
    assert client.get(reverse("certificate_action", args=[card.pk, "explode"])).status_code == 404


def test_an_action_without_a_reason_writes_nothing(client, clerk, make_citizen, system_actor):
    card = active_card(make_citizen, system_actor)
    response = act(client, card, "suspend", reason="")
    assert response.status_code == 200
    assert "必须填写原因" in response.content.decode()
    card.refresh_from_db()
    assert card.state == CertificateState.ACTIVE


def test_detail_offers_only_the_actions_the_card_allows(client, clerk, make_citizen, system_actor):
    card = active_card(make_citizen, system_actor)
    body = client.get(reverse("citizen_detail", args=[card.citizen_id])).content.decode()
    for action in ("suspend", "revoke", "reissue"):
        assert reverse("certificate_action", args=[card.pk, action]) in body
    assert reverse("certificate_action", args=[card.pk, "reinstate"]) not in body


def test_auditor_of_the_region_sees_the_card_but_gets_403_on_actions(client, make_user, make_citizen, system_actor):
    card = active_card(make_citizen, system_actor)
    sign_in(client, make_user(Role.AUDITOR, ("310000",)))
    body = client.get(reverse("citizen_detail", args=[card.citizen_id])).content.decode()
    assert card.number in body
    assert reverse("certificate_action", args=[card.pk, "suspend"]) not in body
    assert act(client, card, "suspend").status_code == 403
    assert (
        client.post(
            reverse("certificate_issue", args=[card.citizen_id]), {"reason": "x", "confirmed": "yes"}
        ).status_code
        == 403
    )
    card.refresh_from_db()
    assert card.state == CertificateState.ACTIVE
