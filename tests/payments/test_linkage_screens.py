"""Clerks end wallet linkages (partners record them, through the API); the sandbox receipts page."""

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


@pytest.mark.parametrize("role", [Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.CLERK, Role.AUDITOR])
def test_no_role_can_record_a_linkage_on_a_screen(client, make_user, make_citizen, partner, role):
    """Linking is the partner's act after its own real-name check (finding 4): the screen is gone."""
    citizen = make_citizen("310000", with_card=True)
    sign_in(client, make_user(role, ("310000",)))
    for url in (f"/partners/linkages/new/{citizen.pk}/", f"/partners/linkages/new/{citizen.pk}"):
        assert client.get(url).status_code == 404
        assert client.post(url, {"partner": partner.pk, "partner_user_ref": "wx-user-1"}).status_code == 404
    assert not WalletLinkage.objects.exists()
    assert citizen.certificates.get().state == CertificateState.PENDING_ACTIVATION
    assert not AuditEvent.objects.filter(action="linkage.create").exists()


def test_citizen_page_offers_no_way_to_record_a_linkage(client, clerk, make_citizen, partner):
    citizen = make_citizen("310000", with_card=True)
    linkage = services.linkage_create(actor=Actor.system("t"), partner=partner, citizen=citizen, partner_user_ref="a")
    page = client.get(reverse("citizen_detail", args=[citizen.pk])).content.decode()
    assert "/partners/linkages/new/" not in page
    assert "登记钱包绑定" not in page
    assert reverse("linkage_unlink", args=[linkage.public_id]) in page  # ending one stays


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


def test_sandbox_page_and_export_name_event_types_in_the_screen_language(client, make_user):
    SandboxReceipt.objects.create(
        partner_code="wechat", event_id="evt_1", event_type="certificate.suspended", body="{}", signature_valid=True
    )
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ("310000",)))
    html = client.get(reverse("sandbox_receipts")).content.decode()
    assert "暂停电子凭证" in html, "the label, with the code beside it for the partner's engineers"
    export = b"".join(client.post(reverse("sandbox_receipts"), {"format": "csv"}).streaming_content).decode("utf-8-sig")
    assert "暂停电子凭证" in export and "certificate.suspended" not in export


@pytest.mark.parametrize("role", [Role.CLERK, Role.AUDITOR])
def test_sandbox_page_is_refused_to_clerks_and_auditors(client, make_user, role):
    sign_in(client, make_user(role, ("310000",)))
    assert client.get(reverse("sandbox_receipts")).status_code == 403
