"""Clerks record and end wallet linkages; the sandbox receipts page."""

import pytest
from django.urls import reverse

from insurance.models import CertificateState
from payments.linkages import services
from payments.models import LinkageEndReason, LinkageState, SandboxReceipt, WalletLinkage
from portal.actors import Actor
from portal.models import AuditEvent, Role
from testkit.screens import make_partner, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk(client, make_user):
    user = make_user(Role.CLERK, ("310000",))
    sign_in(client, user)
    return user


@pytest.fixture
def partner():
    return make_partner()


def test_clerk_records_a_linkage_which_activates_the_pending_card(client, clerk, make_citizen, partner):
    citizen = make_citizen("310000", with_card=True)
    url = reverse("linkage_create", args=[citizen.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"partner": partner.pk, "partner_user_ref": "wx-user-1"})
    assert response.status_code == 302
    linkage = WalletLinkage.objects.get()
    assert (linkage.citizen, linkage.partner_user_ref, linkage.state) == (citizen, "wx-user-1", LinkageState.ACTIVE)
    assert citizen.certificates.get().state == CertificateState.ACTIVE
    assert "wx-user-1" in client.get(reverse("citizen_detail", args=[citizen.pk])).content.decode()


def test_a_second_linkage_with_the_same_partner_is_a_form_error(client, clerk, make_citizen, partner):
    citizen = make_citizen("310000", with_card=True)
    services.linkage_create(actor=Actor.system("t"), partner=partner, citizen=citizen, partner_user_ref="a")
    response = client.post(
        reverse("linkage_create", args=[citizen.pk]), {"partner": partner.pk, "partner_user_ref": "b"}
    )
    assert response.status_code == 200
    assert "已存在有效绑定" in response.content.decode()
    assert WalletLinkage.objects.count() == 1


def test_a_citizen_without_a_card_cannot_be_linked(client, clerk, make_citizen, partner):
    citizen = make_citizen("310000")
    response = client.post(
        reverse("linkage_create", args=[citizen.pk]), {"partner": partner.pk, "partner_user_ref": "b"}
    )
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert not WalletLinkage.objects.exists()


def test_linkage_form_rejects_an_empty_reference(client, clerk, make_citizen, partner):
    citizen = make_citizen("310000", with_card=True)
    response = client.post(
        reverse("linkage_create", args=[citizen.pk]), {"partner": partner.pk, "partner_user_ref": "  "}
    )
    assert "partner_user_ref" in response.context["form"].errors
    assert not WalletLinkage.objects.exists()


def test_clerk_unlinks_only_after_confirmation(client, clerk, make_citizen, partner):
    citizen = make_citizen("310000", with_card=True)
    linkage = services.linkage_create(actor=Actor.system("t"), partner=partner, citizen=citizen, partner_user_ref="a")
    url = reverse("linkage_unlink", args=[linkage.public_id])
    step2 = client.post(url, {"note": "参保人来电"})
    assert step2.context["step"] == "confirm"
    linkage.refresh_from_db()
    assert linkage.state == LinkageState.ACTIVE
    assert client.post(url, {"note": "参保人来电", "confirmed": "yes"}).status_code == 302
    linkage.refresh_from_db()
    assert (linkage.state, linkage.end_reason) == (LinkageState.UNLINKED, LinkageEndReason.CLERK)
    assert AuditEvent.objects.filter(action="linkage.unlink", object_id=linkage.public_id, reason="参保人来电").exists()


def test_auditor_cannot_record_or_end_linkages(client, make_user, make_citizen, partner):
    citizen = make_citizen("310000", with_card=True)
    linkage = services.linkage_create(actor=Actor.system("t"), partner=partner, citizen=citizen, partner_user_ref="a")
    sign_in(client, make_user(Role.AUDITOR, ("310000",)))
    assert client.get(reverse("linkage_create", args=[citizen.pk])).status_code == 403
    response = client.post(reverse("linkage_unlink", args=[linkage.public_id]), {"note": "x", "confirmed": "yes"})
    assert response.status_code == 403
    linkage.refresh_from_db()
    assert linkage.state == LinkageState.ACTIVE


@pytest.mark.parametrize("role", [Role.NATIONAL_OPERATOR, Role.REGION_ADMIN])
def test_sandbox_page_lists_receipts_for_operators_and_admins(client, make_user, role):
    for n in range(55):
        SandboxReceipt.objects.create(
            partner_code="wechat",
            event_id=f"evt_{n:03d}",
            event_type="linkage.created",
            body="{}",
            signature_valid=n % 2 == 0,
        )
    sign_in(client, make_user(role, ("310000",)))
    first = client.get(reverse("sandbox_receipts"))
    assert first.status_code == 200
    assert len(first.context["page"]) == 50
    assert "evt_054" in first.content.decode()
    assert len(client.get(reverse("sandbox_receipts"), {"page": 2}).context["page"]) == 5


@pytest.mark.parametrize("role", [Role.CLERK, Role.AUDITOR])
def test_sandbox_page_is_refused_to_clerks_and_auditors(client, make_user, role):
    sign_in(client, make_user(role, ("310000",)))
    assert client.get(reverse("sandbox_receipts")).status_code == 403
