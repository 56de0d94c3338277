"""`python manage.py create_partner` and the partner services it calls."""

import json
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from payments import keys
from payments.models import Partner, PartnerKey, PartnerKeyState, PartnerState
from payments.partners import services as partners
from portal.actors import Actor
from portal.errors import DomainError
from portal.models import AuditEvent
from testkit.partner_client import PartnerClient


def write_public_pem(tmp_path, name: str = "partner") -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / f"{name}.pem"
    path.write_bytes(pem)
    return private, str(path)


def run(*args: str) -> dict:
    out = StringIO()
    call_command("create_partner", *args, stdout=out, stderr=StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_create_partner_registers_a_partner_whose_key_signs_requests(db, tmp_path):
    keys._forget_cached_key()
    keys.portal_key_create(actor=Actor.system("tests"))
    private, pem = write_public_pem(tmp_path)
    result = run(
        "alipay",
        "--name",
        "Alipay",
        "--kind",
        "wallet",
        "--webhook-url",
        "http://127.0.0.1:9/hook",
        "--public-key-file",
        pem,
    )
    assert result["partner"] == "alipay"
    partner = Partner.objects.get(code="alipay")
    assert (partner.name, partner.kind, partner.webhook_url) == ("Alipay", "wallet", "http://127.0.0.1:9/hook")
    assert PartnerKey.objects.get(key_id=result["key_id"]).partner == partner
    assert AuditEvent.objects.filter(action="partner.create", object_id="alipay").exists()
    client = PartnerClient(key_id=result["key_id"], private_key=private, django_client=Client())
    response = client.get("/api/v1/events")
    assert response.status == 200, response.body
    keys._forget_cached_key()


def test_create_partner_adds_a_key_to_an_existing_partner(db, tmp_path):
    _, pem1 = write_public_pem(tmp_path, "one")
    _, pem2 = write_public_pem(tmp_path, "two")
    first = run("wechat", "--name", "WeChat Pay", "--kind", "wallet", "--public-key-file", pem1)
    second = run("wechat", "--public-key-file", pem2)
    assert second["partner"] == "wechat" and second["key_id"] != first["key_id"]
    assert Partner.objects.filter(code="wechat").count() == 1
    assert PartnerKey.objects.filter(partner__code="wechat", state=PartnerKeyState.ACTIVE).count() == 2


def test_create_partner_accepts_a_base64_raw_public_key(db, tmp_path):
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    path = tmp_path / "raw.txt"
    import base64

    path.write_text(base64.b64encode(raw).decode() + "\n")
    result = run("svc", "--name", "Service", "--kind", "service_platform", "--public-key-file", str(path))
    assert PartnerKey.objects.get(key_id=result["key_id"]).public_key == base64.b64encode(raw).decode()


def test_create_partner_refuses_a_private_key_file(db, tmp_path):
    private = Ed25519PrivateKey.generate()
    path = tmp_path / "private.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(CommandError, match="private key"):
        run("bad", "--name", "Bad", "--kind", "wallet", "--public-key-file", str(path))
    assert not Partner.objects.filter(code="bad").exists()


def test_create_partner_refuses_a_non_ed25519_key_and_writes_nothing(db, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(CommandError, match="Ed25519"):
        run("ecpartner", "--name", "EC", "--kind", "wallet", "--public-key-file", str(path))
    assert not Partner.objects.filter(code="ecpartner").exists()


def test_create_partner_needs_a_name_and_kind_for_a_new_partner(db, tmp_path):
    _, pem = write_public_pem(tmp_path)
    with pytest.raises(CommandError, match="--name and --kind"):
        run("nameless", "--public-key-file", pem)


def test_create_partner_reports_an_unreadable_key_file(db, tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run("x1", "--name", "X", "--kind", "wallet", "--public-key-file", str(tmp_path / "missing.pem"))


@pytest.mark.parametrize(
    "url", ["ftp://example.cn/hook", "http://", "not a url", "https://u:p@example.cn/h", "https://example.cn:99999/h"]
)
def test_a_malformed_webhook_url_is_refused(db, tmp_path, url):
    _, pem = write_public_pem(tmp_path)
    with pytest.raises(CommandError, match="webhook_url"):
        run("hooky", "--name", "H", "--kind", "wallet", "--webhook-url", url, "--public-key-file", pem)


@override_settings(ECARD_WEBHOOK_PUBLIC_ONLY=True)
def test_a_production_portal_requires_https_webhooks_to_public_addresses(db):
    assert partners.clean_webhook_url("https://pay.example.cn/ecard") == "https://pay.example.cn/ecard"
    assert partners.clean_webhook_url("https://8.8.8.8/hook") == "https://8.8.8.8/hook"
    for url in ("http://pay.example.cn/ecard", "http://127.0.0.1:8000/sandbox", "http://[::1]:8000/sandbox"):
        with pytest.raises(DomainError):
            partners.clean_webhook_url(url)


@override_settings(ECARD_WEBHOOK_PUBLIC_ONLY=False)
def test_a_demo_portal_accepts_http_and_loopback_webhooks(db):
    assert partners.clean_webhook_url("http://pay.example.cn/ecard") == "http://pay.example.cn/ecard"
    assert partners.clean_webhook_url("http://127.0.0.1:8000/sandbox") == "http://127.0.0.1:8000/sandbox"


def test_partner_services_write_their_audit_events(db, tmp_path):
    actor = Actor.system("tests")
    partner = partners.partner_create(actor=actor, code="audited", name="Audited", kind="wallet")
    _, pem = write_public_pem(tmp_path)
    key = partners.partner_key_add(actor=actor, partner=partner, public_key=open(pem).read())
    partners.partner_key_revoke(actor=actor, key=key, reason="rotated")
    partners.partner_set_webhook_url(actor=actor, partner=partner, webhook_url="https://a.example.cn/h")
    partners.partner_suspend(actor=actor, partner=partner, reason="contract ended")
    partners.partner_reactivate(actor=actor, partner=partner)
    partners.partner_pause_deliveries(actor=actor, partner=partner)
    partners.partner_resume_deliveries(actor=actor, partner=partner)
    partners.partner_set_rate_limit(actor=actor, partner=partner, rate_limit_per_second=50)
    partner.refresh_from_db()
    assert (partner.state, partner.deliveries_paused, partner.rate_limit_per_second) == (PartnerState.ACTIVE, False, 50)
    assert list(AuditEvent.objects.order_by("seq").values_list("action", flat=True)) == [
        "partner.create",
        "partner_key.add",
        "partner_key.revoke",
        "partner.set_webhook_url",
        "partner.suspend",
        "partner.reactivate",
        "partner.pause_deliveries",
        "partner.resume_deliveries",
        "partner.set_rate_limit",
    ]
    with pytest.raises(DomainError) as error:
        partners.partner_key_revoke(actor=actor, key=key)
    assert error.value.code == "invalid_state"
    with pytest.raises(DomainError):
        partners.partner_set_rate_limit(actor=actor, partner=partner, rate_limit_per_second=0)
    with pytest.raises(DomainError) as error:
        partners.partner_create(actor=actor, code="audited", name="Again", kind="wallet")
    assert error.value.code == "partner_exists"
