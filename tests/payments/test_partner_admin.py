"""Partners on screens: national operators register them and set webhook URL, state and rate
limit; security officers add and revoke their keys (separation of duties, DESIGN §2)."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client
from django.urls import reverse

from payments import keys
from payments.models import Partner, PartnerKey, PartnerKeyState, PartnerState
from portal.actors import Actor
from portal.models import AuditEvent, Role
from testkit.partner_client import PartnerClient
from testkit.screens import make_partner, sign_in

pytestmark = pytest.mark.django_db


def public_pem(private: Ed25519PrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def operator(client, make_user):
    user = make_user(Role.NATIONAL_OPERATOR, ("310000",))
    sign_in(client, user)
    return user


@pytest.fixture
def officer(client, make_user):
    user = make_user(Role.SECURITY_OFFICER, ())
    sign_in(client, user)
    return user


@pytest.fixture
def partner():
    return make_partner("alipay", "Alipay")


def admin_urls(partner: Partner) -> list[str]:
    return [
        reverse("partner_list"),
        reverse("partner_create"),
        reverse("partner_detail", args=[partner.code]),
        reverse("partner_webhook", args=[partner.code]),
        reverse("partner_state", args=[partner.code]),
        reverse("partner_rate_limit", args=[partner.code]),
    ]


def key_urls(partner: Partner) -> list[str]:
    key = PartnerKey.objects.create(partner=partner, key_id=f"{partner.code}-k", public_key="A" * 43 + "=")
    return [
        reverse("partner_key_add", args=[partner.code]),
        reverse("partner_key_revoke", args=[partner.code, key.key_id]),
    ]


@pytest.mark.parametrize("role", [Role.CLERK, Role.AUDITOR, Role.REGION_ADMIN])
def test_only_national_operators_and_security_officers_may_open_partner_administration(
    client, make_user, partner, role
):
    sign_in(client, make_user(role, ("310000",)))
    for url in admin_urls(partner) + key_urls(partner):
        assert client.get(url).status_code == 403, url
        assert client.post(url, {"reason": "x", "confirmed": "yes"}).status_code == 403, url
    assert Partner.objects.get(pk=partner.pk).state == PartnerState.ACTIVE


def test_national_operators_cannot_add_or_revoke_keys(client, operator, partner):
    for url in key_urls(partner):
        assert client.get(url).status_code == 403, url
        assert client.post(url, {"reason": "x", "public_key": "A" * 43 + "=", "confirmed": "yes"}).status_code == 403
    assert list(partner.keys.values_list("state", flat=True)) == [PartnerKeyState.ACTIVE]


def test_security_officers_cannot_register_or_change_partners(client, officer, partner):
    for url in admin_urls(partner)[1:2] + admin_urls(partner)[3:]:
        assert client.get(url).status_code == 403, url
        assert client.post(url, {"reason": "x", "confirmed": "yes", "rate_limit_per_second": "9"}).status_code == 403
    assert Partner.objects.get(pk=partner.pk).state == PartnerState.ACTIVE


def test_partner_administration_needs_a_signed_in_person(client, partner):
    response = client.get(reverse("partner_list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_operator_lists_partners_in_both_languages(client, operator, partner):
    response = client.get(reverse("partner_list"))
    assert response.status_code == 200 and "Alipay" in response.content.decode()
    assert "合作方" in response.content.decode()
    client.cookies["django_language"] = "en"
    assert "Register a partner" in client.get(reverse("partner_list")).content.decode()


def test_operator_registers_a_partner_and_the_security_officer_adds_a_key_that_can_sign(client, operator, make_user):
    keys._forget_cached_key()
    keys.portal_key_create(actor=Actor.system("tests"))
    private = Ed25519PrivateKey.generate()
    response = client.post(
        reverse("partner_create"),
        {"code": "jdpay", "name": "JD Pay", "kind": "wallet", "webhook_url": "https://pay.example.cn/ecard"},
    )
    assert response.status_code == 302
    partner = Partner.objects.get(code="jdpay")
    assert AuditEvent.objects.filter(action="partner.create", object_id="jdpay").exists()
    officer = make_user(Role.SECURITY_OFFICER, ())
    sign_in(client, officer)
    response = client.post(reverse("partner_key_add", args=["jdpay"]), {"public_key": public_pem(private)})
    assert response.status_code == 302
    key = partner.keys.get()
    assert AuditEvent.objects.filter(
        action="partner_key.add", object_id=key.key_id, actor_type="user", actor_id=str(officer.pk)
    ).exists()
    signed = PartnerClient(key_id=key.key_id, private_key=private, django_client=Client())
    assert signed.get("/api/v1/events").status == 200
    keys._forget_cached_key()


def test_a_bad_url_is_a_form_error_and_nothing_is_written(client, operator):
    response = client.post(
        reverse("partner_create"),
        {"code": "badurl", "name": "Bad", "kind": "wallet", "webhook_url": "ftp://x"},
    )
    assert response.status_code == 200
    assert not Partner.objects.filter(code="badurl").exists()


def test_a_bad_key_is_a_form_error_and_nothing_is_written(client, officer, partner):
    response = client.post(reverse("partner_key_add", args=[partner.code]), {"public_key": "not a key"})
    assert response.status_code == 200 and "PEM" in response.content.decode()
    assert not partner.keys.exists()


def test_a_duplicate_code_is_a_form_error(client, operator, partner):
    response = client.post(reverse("partner_create"), {"code": "alipay", "name": "Again", "kind": "wallet"})
    assert response.status_code == 200
    assert Partner.objects.filter(code="alipay").count() == 1


def test_security_officer_adds_a_raw_base64_key(client, officer, partner):
    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    response = client.post(
        reverse("partner_key_add", args=[partner.code]), {"public_key": base64.b64encode(raw).decode()}
    )
    assert response.status_code == 302
    assert partner.keys.get().public_key == base64.b64encode(raw).decode()


def test_revoking_a_key_asks_for_confirmation_then_refuses_its_requests(client, officer, partner):
    keys._forget_cached_key()
    keys.portal_key_create(actor=Actor.system("tests"))
    private = Ed25519PrivateKey.generate()
    client.post(reverse("partner_key_add", args=[partner.code]), {"public_key": public_pem(private)})
    key = partner.keys.get()
    url = reverse("partner_key_revoke", args=[partner.code, key.key_id])
    confirm = client.post(url, {"reason": "leaked"})
    assert confirm.status_code == 200 and 'name="confirmed"' in confirm.content.decode()
    assert PartnerKey.objects.get(pk=key.pk).state == PartnerKeyState.ACTIVE
    assert client.post(url, {"reason": "leaked", "confirmed": "yes"}).status_code == 302
    assert PartnerKey.objects.get(pk=key.pk).state == PartnerKeyState.REVOKED
    signed = PartnerClient(key_id=key.key_id, private_key=private, django_client=Client())
    response = signed.get("/api/v1/events")
    assert (response.status, response.code) == (403, "forbidden")
    assert client.get(url).status_code == 404  # a revoked key cannot be revoked again
    keys._forget_cached_key()


def test_suspending_a_partner_needs_a_reason_and_a_confirmation(client, operator, partner):
    url = reverse("partner_state", args=[partner.code])
    assert client.post(url, {"reason": ""}).status_code == 200
    client.post(url, {"reason": "contract ended"})
    assert Partner.objects.get(pk=partner.pk).state == PartnerState.ACTIVE
    assert client.post(url, {"reason": "contract ended", "confirmed": "yes"}).status_code == 302
    assert Partner.objects.get(pk=partner.pk).state == PartnerState.SUSPENDED
    event = AuditEvent.objects.get(action="partner.suspend")
    assert event.reason == "contract ended" and event.actor_id == str(operator.pk)
    assert client.post(url, {"reason": "", "confirmed": "yes"}).status_code == 302
    assert Partner.objects.get(pk=partner.pk).state == PartnerState.ACTIVE


def test_changing_the_webhook_url_is_confirmed_and_validated(client, operator, partner):
    url = reverse("partner_webhook", args=[partner.code])
    assert client.post(url, {"webhook_url": "gopher://x", "reason": "new", "confirmed": "yes"}).status_code == 200
    done = client.post(url, {"webhook_url": "https://hooks.example.cn/e", "reason": "new", "confirmed": "yes"})
    assert done.status_code == 302
    assert Partner.objects.get(pk=partner.pk).webhook_url == "https://hooks.example.cn/e"


def test_operator_sets_the_rate_limit(client, operator, partner):
    url = reverse("partner_rate_limit", args=[partner.code])
    assert client.post(url, {"rate_limit_per_second": "0"}).status_code == 200
    assert client.post(url, {"rate_limit_per_second": "50"}).status_code == 302
    assert Partner.objects.get(pk=partner.pk).rate_limit_per_second == 50


def test_an_unknown_partner_answers_404(client, operator):
    assert client.get(reverse("partner_detail", args=["nobody"])).status_code == 404
