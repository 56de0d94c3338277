"""The demo data command: every e-card state, both wallets with keys, staff per role, a week of
settlements with open risk flags, idempotent."""

import base64
import datetime as dt
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command, get_commands
from django.db.models import Sum
from django.utils import timezone

from backoffice import demo, demo_settlements
from insurance.identity import parse_identity_number
from insurance.models import Certificate, CertificateState, Citizen, CitizenStatus, EndReason, ReimbursementPolicy
from payments.ledger.services import ledger_sum
from payments.models import (
    AccountEntry,
    CitizenYearAccumulator,
    LinkageState,
    OutboxEvent,
    Partner,
    PartnerKey,
    PersonalAccount,
    PortalKey,
    QrToken,
    RiskFlag,
    RiskFlagState,
    RiskRule,
    Settlement,
    SettlementState,
    WalletLinkage,
)
from payments.risk.selectors import risk_flags_visible_to
from payments.settlements.services import LineInput
from portal.audit import verify_chain
from portal.models import AuditEvent, Role, RollupDaily, User

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


def _demo_counts() -> tuple:
    return (
        Citizen.objects.count(),
        Certificate.objects.count(),
        AuditEvent.objects.count(),
        WalletLinkage.objects.count(),
        PartnerKey.objects.count(),
        User.objects.count(),
        PortalKey.objects.count(),
        Settlement.objects.count(),
        QrToken.objects.count(),
        RiskFlag.objects.count(),
        AccountEntry.objects.count(),
        OutboxEvent.objects.count(),
        sorted(CitizenYearAccumulator.objects.values_list("citizen_id", "deductible_used_fen", "fund_used_fen")),
        sorted(PersonalAccount.objects.values_list("citizen_id", "balance_fen", "held_fen")),
        sorted(Settlement.objects.values_list("public_id", "state", "created_at", "total_fen", "fund_fen")),
    )


def test_second_seed_demo_run_does_nothing_and_says_so(key_dir):
    seed()
    counts = _demo_counts()
    pem = (key_dir / "wechat_pay.pem").read_bytes()

    output = seed()

    assert "nothing to do" in output
    assert _demo_counts() == counts
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


# --- Settlements ------------------------------------------------------------------------------


def test_seed_demo_creates_a_week_of_settlements_in_every_state(key_dir):
    output = seed()

    by_state = {state: Settlement.objects.filter(state=state).count() for state in SettlementState.values}
    assert all(by_state.values()), by_state  # paid, refunded, expired, cancelled and pending
    assert by_state[SettlementState.PAID] > sum(by_state.values()) / 2
    assert sum(by_state.values()) >= demo_settlements.settlements_for(60)
    assert "Settlements of the last week by state" in output
    now = timezone.now()
    local_today = timezone.localdate(now, timezone=demo_settlements.SHANGHAI)
    first_day = local_today - dt.timedelta(days=demo_settlements.DAYS - 1)
    for row in Settlement.objects.all():
        assert row.year == local_today.year
        local = timezone.localtime(row.created_at, timezone=demo_settlements.SHANGHAI)
        assert first_day <= local.date() <= local_today
        assert row.created_at <= now
        assert row.expires_at == row.created_at + dt.timedelta(minutes=15)
        assert row.qr_token.used_at == row.created_at
        assert row.fund_fen + row.account_fen + row.self_pay_fen == row.total_fen
        if row.state == SettlementState.PENDING_PAYMENT:
            assert row.expires_at > now  # left at the present, for the expiry sweep to find later
        if row.paid_at:
            assert row.created_at < row.paid_at <= now
            assert row.partner_transaction_id
        if row.refunded_at:
            assert row.paid_at < row.refunded_at <= now
        if row.state in (SettlementState.EXPIRED, SettlementState.CANCELLED):
            assert row.created_at < row.released_at <= now
    # Spread over the days, the regions, both wallets and every kind of facility.
    days = {timezone.localtime(at, timezone=demo_settlements.SHANGHAI).date() for at in _created()}
    assert len(days) >= 3
    assert Settlement.objects.values("citizen__region_id").distinct().count() >= 4
    assert set(Settlement.objects.values_list("partner__code", flat=True)) == {"wechat_pay", "alipay"}
    assert set(Settlement.objects.values_list("facility__kind", flat=True)) == {"hospital", "clinic", "pharmacy"}
    assert Settlement.objects.filter(account_fen__gt=0).exists()
    assert Settlement.objects.filter(fund_fen__gt=0).exists()


def _created() -> list[dt.datetime]:
    return list(Settlement.objects.values_list("created_at", flat=True))


def test_seed_demo_settlements_go_through_the_services(key_dir):
    seed()

    for row in Settlement.objects.all():
        actions = list(
            AuditEvent.objects.filter(object_type="settlement", object_id=row.public_id)
            .order_by("seq")
            .values_list("action", flat=True)
        )
        expected = {
            SettlementState.PENDING_PAYMENT: ["settlement.create"],
            SettlementState.PAID: ["settlement.create", "settlement.confirm"],
            SettlementState.REFUNDED: ["settlement.create", "settlement.confirm", "settlement.refund"],
            SettlementState.EXPIRED: ["settlement.create", "settlement.expire"],
            SettlementState.CANCELLED: ["settlement.create", "settlement.cancel"],
        }[row.state]
        assert actions == expected
        assert OutboxEvent.objects.filter(object_id=row.public_id).count() == len(expected) - 1
    assert verify_chain() == []


def test_seed_demo_accumulators_and_accounts_equal_their_settlements(key_dir):
    seed()

    reserving = (SettlementState.PENDING_PAYMENT, SettlementState.PAID)
    accumulators = CitizenYearAccumulator.objects.select_related("citizen")
    assert accumulators.exists()
    for accumulator in accumulators:
        sums = Settlement.objects.filter(
            citizen=accumulator.citizen, year=accumulator.year, state__in=reserving
        ).aggregate(deductible=Sum("deductible_fen"), fund=Sum("fund_fen"))
        assert accumulator.deductible_used_fen == (sums["deductible"] or 0)
        assert accumulator.fund_used_fen == (sums["fund"] or 0)
        policy = ReimbursementPolicy.objects.filter(
            region=accumulator.citizen.region, scheme=accumulator.citizen.scheme, year=accumulator.year
        ).latest("version")
        assert accumulator.deductible_used_fen <= policy.deductible_fen
        assert accumulator.fund_used_fen <= policy.annual_cap_fen
    for account in PersonalAccount.objects.all():
        assert ledger_sum(account) == account.balance_fen
        held = Settlement.objects.filter(
            citizen_id=account.citizen_id, state=SettlementState.PENDING_PAYMENT
        ).aggregate(s=Sum("account_fen"))["s"]
        assert account.held_fen == (held or 0)
        debited = Settlement.objects.filter(citizen_id=account.citizen_id, state=SettlementState.PAID).aggregate(
            s=Sum("account_fen")
        )["s"]
        funded = AccountEntry.objects.filter(account=account, kind="adjustment").aggregate(s=Sum("amount_fen"))["s"]
        assert account.balance_fen == (funded or 0) - (debited or 0)


def test_seed_demo_leaves_open_risk_flags_for_the_demo_administrator(key_dir):
    seed()

    open_flags = RiskFlag.objects.filter(state=RiskFlagState.OPEN)
    assert {RiskRule.FACILITIES_PER_DAY, RiskRule.LARGE_SETTLEMENT} <= set(open_flags.values_list("rule", flat=True))
    admin = User.objects.get(username="admin")
    assert risk_flags_visible_to(admin).filter(state=RiskFlagState.OPEN).count() >= 2
    for flag in open_flags:
        assert Settlement.objects.filter(public_id__in=flag.evidence["settlements"]).exists()
    assert AuditEvent.objects.filter(action="risk_flag.raise").count() == RiskFlag.objects.count()


def test_seed_demo_fills_the_dashboard_settlement_rollups(key_dir):
    seed()

    counted = Settlement.objects.filter(paid_at__isnull=False)
    settled = RollupDaily.objects.filter(metric="settled").aggregate(s=Sum("value"))["s"]
    fund = RollupDaily.objects.filter(metric="fund_fen").aggregate(s=Sum("value"))["s"]
    assert settled == counted.count()
    assert fund == counted.aggregate(s=Sum("fund_fen"))["s"]
    assert RollupDaily.objects.filter(metric="refunded").exists()
    assert RollupDaily.objects.filter(metric="settled").values("day").distinct().count() >= 3


def test_demo_settlement_plan_is_the_same_on_every_run():
    cards = [
        demo_settlements.Card(index, ("wechat_pay", "alipay")[index % 2], index, region, scheme)
        for index, (region, scheme) in enumerate(
            [(region, scheme) for region in sorted(demo.PILOT_REGIONS) for scheme in ("employee", "resident")] * 3
        )
    ]
    now = dt.datetime(2026, 6, 10, 4, 0, tzinfo=dt.UTC)

    first = demo_settlements.plan_settlements(300, cards, now=now)

    assert first == demo_settlements.plan_settlements(300, cards, now=now)
    assert {plan.outcome for plan in first} == set(SettlementState.values)
    moments = [plan.at for plan in first if plan.at is not None]
    assert moments == sorted(moments)
    assert all(now - dt.timedelta(days=7) < at <= now - demo_settlements.QUIET for at in moments)
    # The bills the rules flag: one above the large-settlement threshold, one card at four facilities a day.
    assert any(sum(line.quantity * line.unit_price_fen for line in plan.lines) > 500_000 for plan in first)
    for plan in first:
        for line in plan.lines:
            assert isinstance(line, LineInput)
            assert 0 < line.unit_price_fen <= demo_settlements.MAX_PRICE[line.service_code]


def test_demo_settlements_stay_in_the_current_year():
    cards = [demo_settlements.Card(1, "wechat_pay", 1, "310000", "employee")]
    now = dt.datetime(2027, 1, 2, 4, 0, tzinfo=dt.UTC)  # 12:00 on 2 January in Shanghai

    plans = demo_settlements.plan_settlements(40, cards, now=now)

    for plan in plans:
        if plan.at is not None:
            assert plan.at.astimezone(demo_settlements.SHANGHAI).year == 2027
