"""The demo data command: every e-card state, both wallets with keys, staff per role, idempotent."""

import base64
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command, get_commands
from django.utils import timezone

from backoffice import demo
from insurance.identity import parse_identity_number
from insurance.models import Certificate, CertificateState, Citizen, CitizenStatus, EndReason
from payments.models import LinkageState, OutboxEvent, Partner, PartnerKey, PortalKey, WalletLinkage
from portal.audit import verify_chain
from portal.models import AuditEvent, Role, User

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    # Five staff accounts per seed: the production hasher would make this module slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return tmp_path / "demo-partner-keys"


def seed(citizens: int = 60) -> str:
    out = StringIO()
    call_command("seed_demo", "--citizens", str(citizens), stdout=out)
    return out.getvalue()


def test_seed_demo_creates_cards_in_every_state_and_reissue_chains(key_dir):
    seed()

    states = set(Certificate.objects.values_list("state", flat=True))
    assert states == set(CertificateState.values)
    assert Certificate.objects.filter(previous__isnull=False, previous__end_reason=EndReason.REISSUED).exists()
    # A card replaced after it expired keeps its `expired` state and has a live successor.
    assert Certificate.objects.filter(state=CertificateState.EXPIRED, successor__state=CertificateState.ACTIVE).exists()
    assert Certificate.objects.filter(state=CertificateState.EXPIRED, previous__isnull=True).exists()
    assert Certificate.objects.filter(end_reason=EndReason.CITIZEN_STATUS).exists()
    assert Citizen.objects.filter(status=CitizenStatus.MOVED_OUT).exists()
    assert Citizen.objects.filter(status=CitizenStatus.DECEASED).exists()
    assert Citizen.objects.count() == 60


def test_seed_demo_goes_through_the_services_so_history_and_audit_exist(key_dir):
    seed()

    for certificate in Certificate.objects.all():
        assert certificate.transitions.filter(action="issue").exists()
    assert AuditEvent.objects.filter(action="citizen.register", actor_label="seed_demo").count() == 60
    assert AuditEvent.objects.filter(action="certificate.expire").exists()
    assert AuditEvent.objects.filter(action="certificate.reissue").exists()
    assert verify_chain() == []


def test_seed_demo_identity_numbers_are_valid_and_in_the_citizens_region(key_dir):
    seed()

    for citizen in Citizen.objects.all():
        identity = parse_identity_number(citizen.id_number)
        assert identity.value[:2] == citizen.region_id[:2]
        assert identity.birth_date == citizen.birth_date
        assert identity.sex == citizen.sex


def test_seed_demo_spreads_citizens_over_the_pilot_regions_and_ages():
    plans = demo.plan_citizens(2000)
    assert {plan.region_code for plan in plans} == set(demo.PILOT_REGIONS)
    assert len({plan.id_number for plan in plans}) == 2000
    this_year = timezone.localdate().year
    ages = [this_year - int(plan.id_number[6:10]) for plan in plans]
    assert sum(age >= 60 for age in ages) > 400
    assert sum(age >= 80 for age in ages) > 60
    assert {plan.scheme for plan in plans} == {"employee", "resident"}


def test_seed_demo_creates_both_wallets_with_keys_whose_private_half_is_on_disk(key_dir, settings):
    output = seed()

    for code in ("wechat_pay", "alipay"):
        partner = Partner.objects.get(code=code)
        assert partner.kind == "wallet"
        assert partner.webhook_url == settings.ECARD_PUBLIC_BASE_URL.rstrip("/") + f"/sandbox/webhooks/{code}"
        key = PartnerKey.objects.get(partner=partner, state="active")
        assert key.key_id in output
        private = serialization.load_pem_private_key((key_dir / f"{code}.pem").read_bytes(), password=None)
        assert isinstance(private, Ed25519PrivateKey)
        public_raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert base64.b64decode(key.public_key) == public_raw
        assert (key_dir / f"{code}.pem").stat().st_mode & 0o077 == 0


def test_seed_demo_links_active_cards_to_wallets_and_some_citizens_to_both(key_dir):
    seed()

    active = WalletLinkage.objects.filter(state=LinkageState.ACTIVE)
    assert active.filter(partner__code="wechat_pay").exists()
    assert active.filter(partner__code="alipay").exists()
    for linkage in active.select_related("certificate"):
        assert linkage.certificate.state in {
            CertificateState.ACTIVE,
            CertificateState.SUSPENDED,
            CertificateState.EXPIRED,
        }
    both = {c for c in active.filter(partner__code="alipay").values_list("citizen_id", flat=True)}
    assert both & set(active.filter(partner__code="wechat_pay").values_list("citizen_id", flat=True))
    assert WalletLinkage.objects.filter(state=LinkageState.UNLINKED).exists()
    assert OutboxEvent.objects.filter(type="linkage.created").count() == WalletLinkage.objects.count()


def test_seed_demo_creates_one_user_per_role_with_the_demo_password(key_dir, monkeypatch):
    monkeypatch.setenv("ECARD_DEMO_PASSWORD", "another-demo-pass-42")
    output = seed()

    expected = {
        "operator": (Role.NATIONAL_OPERATOR, set(demo.PILOT_REGIONS)),
        "admin": (Role.REGION_ADMIN, {"310000"}),
        "clerk": (Role.CLERK, {"310000"}),
        "auditor": (Role.AUDITOR, set(demo.PILOT_REGIONS)),
        "clerk_gd": (Role.CLERK, {"440000"}),
        "security": (Role.SECURITY_OFFICER, set()),
    }
    # One account per role (separation of duties: each duty has its own demo account).
    assert {role for role, _regions in expected.values()} == set(Role.values)
    for username, (role, regions) in expected.items():
        user = User.objects.get(username=username)
        assert user.role == role
        assert set(user.regions.values_list("code", flat=True)) == regions
        assert user.check_password("another-demo-pass-42")
    assert "another-demo-pass-42" in output
    assert "TOTP" in output


def test_the_demo_auditor_is_a_national_auditor_reading_partner_and_key_events(key_dir):
    from portal.selectors_audit import audit_events_visible_to

    seed()

    auditor = User.objects.get(username="auditor")
    visible = audit_events_visible_to(auditor)
    assert visible.count() == AuditEvent.objects.count()
    actions = set(visible.filter(region_code="").values_list("action", flat=True))
    assert {"partner.create", "partner_key.add", "staff.create"} <= actions
    if "rotate_portal_key" in get_commands():
        assert "portal_key.create" in actions


def test_seed_demo_refuses_a_weak_demo_password(key_dir, monkeypatch):
    from django.core.management.base import CommandError

    monkeypatch.setenv("ECARD_DEMO_PASSWORD", "123")
    with pytest.raises(CommandError, match="ECARD_DEMO_PASSWORD"):
        seed()
    assert not Citizen.objects.exists()


def test_seed_demo_creates_the_portal_signing_key_or_says_why_not(key_dir):
    output = seed()

    if "rotate_portal_key" in get_commands():
        assert PortalKey.objects.filter(state="active").count() == 1
    else:
        assert "rotate_portal_key" in output
        assert not PortalKey.objects.exists()


def test_second_seed_demo_run_does_nothing_and_says_so(key_dir):
    seed()
    counts = (
        Citizen.objects.count(),
        Certificate.objects.count(),
        AuditEvent.objects.count(),
        WalletLinkage.objects.count(),
        PartnerKey.objects.count(),
        User.objects.count(),
        PortalKey.objects.count(),
    )
    pem = (key_dir / "wechat_pay.pem").read_bytes()

    output = seed()

    assert "nothing to do" in output
    assert (
        Citizen.objects.count(),
        Certificate.objects.count(),
        AuditEvent.objects.count(),
        WalletLinkage.objects.count(),
        PartnerKey.objects.count(),
        User.objects.count(),
        PortalKey.objects.count(),
    ) == counts
    assert (key_dir / "wechat_pay.pem").read_bytes() == pem


def test_interrupted_seed_demo_resumes_without_duplicating_citizens(key_dir):
    # An earlier run registered the first citizens and stopped before its end mark.
    regions = demo.ensure_regions()
    from portal.actors import Actor

    actor = Actor.system("seed_demo")
    demo.ensure_partners(actor, key_dir)
    demo.seed_citizens(10, actor=actor, regions=regions, out=lambda line: None)

    output = seed(30)

    assert Citizen.objects.count() == 30
    assert "20 citizens created" in output


def test_seed_demo_refuses_to_run_in_production(key_dir, settings):
    from django.core.management.base import CommandError

    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="production mode"):
        seed()
    assert not Citizen.objects.exists()
    assert not Partner.objects.exists()
