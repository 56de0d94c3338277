"""Demo data: regions, citizens with e-cards in every state, the two wallet
partners with their signing keys, linkages, the portal key, one user per role,
and a week of settlements with the risk flags they raise (demo_settlements.py).

Everything about citizens, e-cards and linkages goes through the services, so
that the audit chain, the e-card history and the partners' outbox look
exactly as they would after real use. The data is planned from a fixed random
seed, so two runs plan the same citizens; a run that was interrupted resumes
where it stopped, and a completed run is marked by a `demo.seeded` audit event
so that the next run does nothing.
"""

import base64
import datetime as dt
import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command, get_commands
from django.db import transaction
from django.utils import timezone

from backoffice import demo_settlements
from backoffice.demo_plan import DEMO_SEED, PARTNERS, PILOT_REGIONS, CitizenPlan, plan_citizens
from insurance import services as insurance_services
from insurance.catalogue_demo import seed_catalogue
from insurance.models import ID_NUMBER_PURPOSE, Certificate, Citizen, CitizenStatus
from payments.linkages import services as payment_services
from payments.models import (
    LinkageEndReason,
    Partner,
    PartnerKind,
    PortalKey,
    PortalKeyState,
    WalletLinkage,
)
from payments.partners import services as partner_services
from portal.actors import Actor
from portal.audit import audit_record
from portal.crypto import blind_index_candidates
from portal.models import AuditEvent, Region, Role, User

DEFAULT_DEMO_PASSWORD = "ecard-demo-2019"  # noqa: S105 -- published on purpose; ECARD_DEMO_PASSWORD overrides it
SEEDED_ACTION = "demo.seeded"
Output = Callable[[str], None]

# --- Steps --------------------------------------------------------------------


def ensure_regions() -> dict[str, Region]:
    """The pilot regions (migration portal/0002 loads them; a flushed database may not have them)."""
    for region in PILOT_REGIONS.values():
        Region.objects.get_or_create(
            code=region.code,
            defaults={"name_zh": region.name_zh, "name_en": region.name_en, "pilot_start": region.pilot_start},
        )
    return {region.code: region for region in Region.objects.filter(code__in=PILOT_REGIONS)}


@dataclass
class PartnerResult:
    code: str
    key_id: str
    pem_path: Path
    created: bool


def _load_or_create_private_key(pem_path: Path) -> Ed25519PrivateKey:
    """Reuse the PEM from an earlier seed (so a partner's sandbox keeps working), else make one."""
    if pem_path.exists():
        key = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)
        if isinstance(key, Ed25519PrivateKey):
            return key
    key = Ed25519PrivateKey.generate()
    pem_path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(pem_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def ensure_partners(actor: Actor, key_dir: Path) -> list[PartnerResult]:
    """The two wallets, each with an Ed25519 key whose private half is written to `key_dir`.

    Through the partner services (`create_partner` uses the same ones), so the
    audit log records them; an existing partner is left as it is.
    """
    results: list[PartnerResult] = []
    base = settings.ECARD_PUBLIC_BASE_URL.rstrip("/")
    for code, name in PARTNERS:
        pem_path = key_dir / f"{code}.pem"
        with transaction.atomic():
            partner = Partner.objects.filter(code=code).first()
            if partner is not None:
                key = partner.keys.filter(state="active").order_by("id").first()
                results.append(PartnerResult(code, key.key_id if key else "(no active key)", pem_path, created=False))
                continue
            partner = partner_services.partner_create(
                actor=actor,
                code=code,
                name=name,
                kind=PartnerKind.WALLET,
                webhook_url=f"{base}/sandbox/webhooks/{code}",
            )
            private_key = _load_or_create_private_key(pem_path)
            public_raw = private_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            key = partner_services.partner_key_add(
                actor=actor, partner=partner, public_key=base64.b64encode(public_raw).decode()
            )
            results.append(PartnerResult(code, key.key_id, pem_path, created=True))
    return results


def ensure_portal_key(out: Output) -> bool:
    """Create the portal's first signing key through `rotate_portal_key`; True if one was made."""
    if PortalKey.objects.filter(state=PortalKeyState.ACTIVE).exists():
        return False
    if "rotate_portal_key" not in get_commands():
        out(
            "WARNING: the rotate_portal_key command is not available, so no portal signing key was created; "
            "webhooks and API responses cannot be signed until `python manage.py rotate_portal_key` has run."
        )
        return False
    call_command("rotate_portal_key")
    return True


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    region_codes: tuple[str, ...]
    label: str


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("operator", Role.NATIONAL_OPERATOR, tuple(PILOT_REGIONS), "national operator, all regions"),
    DemoUser("admin", Role.REGION_ADMIN, ("310000",), "region administrator, 310000 上海"),
    DemoUser("clerk", Role.CLERK, ("310000",), "clerk, 310000 上海"),
    # Every pilot region makes it a national auditor: it also reads the national events, the
    # operator's partner changes and the security officer's key rotations (portal/selectors_audit.py).
    DemoUser("auditor", Role.AUDITOR, tuple(PILOT_REGIONS), "national auditor, all regions: the whole audit log"),
    DemoUser("security", Role.SECURITY_OFFICER, (), "security officer, national: signing and partner keys"),
    DemoUser("clerk_gd", Role.CLERK, ("440000",), "clerk, 440000 广东"),
)


def demo_password() -> str:
    """ECARD_DEMO_PASSWORD or the fixed demo default; refused if the password rules would refuse it."""
    password = os.environ.get("ECARD_DEMO_PASSWORD") or DEFAULT_DEMO_PASSWORD
    try:
        validate_password(password)
    except ValidationError as exc:
        raise ValueError("ECARD_DEMO_PASSWORD is too weak: " + " ".join(exc.messages)) from exc
    return password


def ensure_users(actor: Actor, regions: dict[str, Region], password: str) -> list[tuple[DemoUser, bool]]:
    """One staff member per role; an existing account is left as it is (password included)."""
    results: list[tuple[DemoUser, bool]] = []
    for spec in DEMO_USERS:
        with transaction.atomic():
            if User.objects.filter(username=spec.username).exists():
                results.append((spec, False))
                continue
            # Not through portal.services.staff_create, which would force a password change at
            # the first sign-in: the demo's accounts keep the known password the README lists, so
            # that the demo stays usable. Accounts of a real deployment are made by staff_create.
            user = User.objects.create_user(
                username=spec.username,
                email=f"{spec.username}@demo.ecard.example.cn",
                password=password,
                role=spec.role,
            )
            user.regions.set([regions[code] for code in spec.region_codes])
            audit_record(
                actor=actor,
                action="staff.create",
                object_type="user",
                object_id=user.pk,
                region_code=spec.region_codes[0] if len(spec.region_codes) == 1 else "",
                after={"username": user.username, "role": user.role, "regions": list(spec.region_codes)},
            )
            results.append((spec, True))
    return results


# --- Citizens and their e-cards ----------------------------------------------


def _link(actor: Actor, plan: CitizenPlan, citizen: Citizen, partners: dict[str, Partner]) -> Certificate:
    """Link the card to the planned wallets (the first linkage activates it); returns the card."""
    linkages = [
        payment_services.linkage_create(
            actor=actor,
            partner=partners[code],
            citizen=citizen,
            partner_user_ref=plan.partner_refs[code],
            verification_reference=f"demo-verify-{code}",
        )
        for code in plan.partners
    ]
    return linkages[-1].certificate


def _expire(actor: Actor, certificate: Certificate, rng: random.Random) -> Certificate:
    # Only the demo does this: it moves the validity end into the past so that the
    # expiry service has a card to expire today. Nothing else writes expires_at.
    past = timezone.now() - dt.timedelta(days=rng.randint(1, 90))
    Certificate.objects.filter(pk=certificate.pk).update(expires_at=past)
    return insurance_services.certificate_expire(actor=actor, certificate=certificate)


def seed_citizen(
    plan: CitizenPlan, *, actor: Actor, regions: dict[str, Region], partners: dict[str, Partner], rng: random.Random
) -> Citizen:
    """Register one citizen and play their story through the services, in one transaction."""
    with transaction.atomic():
        citizen = insurance_services.citizen_register(
            actor=actor,
            id_number=plan.id_number,
            name=plan.name,
            phone=plan.phone,
            region=regions[plan.region_code],
            scheme=plan.scheme,
        )
        story = plan.story
        if story == "no_card":
            return citizen
        card = insurance_services.certificate_issue(actor=actor, citizen=citizen, reason="参保登记，发放电子凭证")
        if story == "pending":
            return citizen
        if story == "pending_revoked":
            insurance_services.certificate_revoke(actor=actor, certificate=card, reason="重复登记，作废未激活凭证")
            return citizen
        card = _link(actor, plan, citizen, partners)  # activates the card
        if story == "active_unlinked":
            for linkage in WalletLinkage.objects.filter(citizen=citizen, state="active"):
                payment_services.linkage_unlink(
                    actor=actor, linkage=linkage, reason=LinkageEndReason.CITIZEN_REQUEST, note="参保人在钱包中解除绑定"
                )
        elif story == "suspended":
            insurance_services.certificate_suspend(actor=actor, certificate=card, reason="手机丢失，参保人申请临时挂失")
        elif story == "revoked":
            insurance_services.certificate_revoke(actor=actor, certificate=card, reason="参保关系终止，注销凭证")
        elif story == "expired":
            _expire(actor, card, rng)
        elif story == "expired_reissued":
            card = _expire(actor, card, rng)
            insurance_services.certificate_reissue(actor=actor, certificate=card, reason="凭证过期，重新申领")
        elif story == "reissued":
            for _ in range(plan.reissues):
                card = insurance_services.certificate_reissue(
                    actor=actor, certificate=card, reason="更换手机，重新申领凭证"
                )
        elif story == "suspended_reissued":
            card = insurance_services.certificate_suspend(actor=actor, certificate=card, reason="疑似被冒用，暂停使用")
            insurance_services.certificate_reissue(actor=actor, certificate=card, reason="挂失后补发新凭证")
        elif story == "moved_out":
            insurance_services.citizen_set_status(
                actor=actor, citizen=citizen, status=CitizenStatus.MOVED_OUT, reason="参保关系转出本统筹区"
            )
        elif story == "deceased":
            insurance_services.citizen_set_status(
                actor=actor, citizen=citizen, status=CitizenStatus.DECEASED, reason="死亡注销"
            )
        return citizen


def _already_registered(plans: list[CitizenPlan]) -> set[str]:
    """The planned identity numbers already registered, found through the blind index in a few queries."""
    by_index: dict[str, str] = {}
    for plan in plans:
        for candidate in blind_index_candidates(plan.id_number, purpose=ID_NUMBER_PURPOSE):
            by_index[candidate] = plan.id_number
    keys = list(by_index)
    present: set[str] = set()
    for start in range(0, len(keys), 500):
        found = Citizen.objects.filter(id_number_bidx__in=keys[start : start + 500]).values_list(
            "id_number_bidx", flat=True
        )
        present.update(by_index[value] for value in found)
    return present


def seed_citizens(count: int, *, actor: Actor, regions: dict[str, Region], out: Output) -> int:
    """Create the planned citizens not yet present; returns how many were created."""
    partners = {p.code: p for p in Partner.objects.filter(code__in=[code for code, _ in PARTNERS])}
    rng = random.Random(DEMO_SEED + 1)
    created = 0
    plans = plan_citizens(count)
    present = _already_registered(plans)
    for index, plan in enumerate(plans, start=1):
        if plan.id_number in present:
            continue  # seeded by an earlier, interrupted run
        seed_citizen(plan, actor=actor, regions=regions, partners=partners, rng=rng)
        created += 1
        if index % 500 == 0:
            out(f"  {index} of {len(plans)} citizens")
    return created


# --- The whole demo -------------------------------------------------------------


@dataclass
class SeedReport:
    already_seeded: bool = False
    citizens_created: int = 0
    partners: list[PartnerResult] = field(default_factory=list)
    users: list[tuple[DemoUser, bool]] = field(default_factory=list)
    portal_key_created: bool = False
    password: str = ""
    settlements: demo_settlements.SettlementSeedReport | None = None

    @property
    def changed(self) -> bool:
        return bool(
            self.citizens_created
            or self.settlements is not None
            or self.portal_key_created
            or any(p.created for p in self.partners)
            or any(created for _, created in self.users)
        )


def seed_demo(*, citizens: int = 2000, out: Output = print) -> SeedReport:
    report = _seed_demo(citizens=citizens, out=out)
    # The dashboard reads rollups only: fill them now rather than at the first beat tick.
    from backoffice.dashboards.rollups import rollups_rebuild

    rollups_rebuild()
    return report


def _seed_demo(*, citizens: int, out: Output) -> SeedReport:
    actor = Actor.system("seed_demo")
    report = SeedReport(password=demo_password())
    regions = ensure_regions()
    report.partners = ensure_partners(actor, Path(settings.VAR_DIR) / "demo-partner-keys")
    # Before the citizens, so that the deliveries their commits kick can be signed.
    report.portal_key_created = ensure_portal_key(out)
    report.users = ensure_users(actor, regions, report.password)
    # The national catalogue, facilities and policies (idempotent on its own).
    seed_catalogue()
    if AuditEvent.objects.filter(action=SEEDED_ACTION).exists():
        report.already_seeded = True
    else:
        out(f"Seeding {citizens} citizens with their e-cards and wallet linkages ...")
        report.citizens_created = seed_citizens(citizens, actor=actor, regions=regions, out=out)
        with transaction.atomic():
            audit_record(
                actor=actor,
                action=SEEDED_ACTION,
                object_type="demo",
                object_id="demo",
                after={"citizens_planned": citizens, "citizens_created": report.citizens_created},
            )
    # A step of its own with its own mark, so that a demo seeded before it existed gets it too.
    report.settlements = demo_settlements.seed_settlements(count=demo_settlements.settlements_for(citizens), out=out)
    return report


def card_state_counts() -> dict[str, int]:
    counts = Counter(Certificate.objects.values_list("state", flat=True))
    counts["reissued (has a successor)"] = Certificate.objects.filter(successor__isnull=False).count()
    return dict(counts)
