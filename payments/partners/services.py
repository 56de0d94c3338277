"""Partner administration (PARTNER_API.md "Provisioning") and the delivery monitor's reads.

Every change is one audited service function. Partners are national: they
belong to no region, so their audit events carry no region code. Event lists
for region administrators are scoped through `portal.scope` by the citizens
the events concern.
"""

import base64
import binascii
import ipaddress
import re
import secrets
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from payments import signing
from payments.delivery import addresses
from payments.delivery import services as delivery
from payments.models import (
    Partner,
    PartnerKey,
    PartnerKeyState,
    PartnerKind,
    PartnerState,
)
from payments.partners.errors import PartnerErrorCode
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError

CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,31}$")
MAX_RATE_LIMIT = 100_000
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _invalid(field: str, message: str | Promise) -> DomainError:
    return DomainError(PartnerErrorCode.VALIDATION_ERROR, message, status=400, field=field)


# --- Validation ------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clean_webhook_url(url: str) -> str:
    """A webhook URL partners can be reached at; "" means the partner only polls `GET /events`.

    With `ECARD_WEBHOOK_PUBLIC_ONLY` (production): `https` to a public address only, an address
    written in the URL checked here and every resolved address again when a delivery connects
    (payments/delivery/addresses.py). Otherwise (demo, tests) `http` and loopback too.
    """
    url = (url or "").strip()
    if not url:
        return ""
    if len(url) > 500:
        raise _invalid("webhook_url", _("The webhook URL is longer than 500 characters."))
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise _invalid("webhook_url", _("The webhook URL is not a valid URL.")) from None
    del port
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise _invalid("webhook_url", _("The webhook URL must start with https:// (or http://) and name a host."))
    if parts.username or parts.password or parts.fragment:
        raise _invalid("webhook_url", _("The webhook URL must not contain credentials or a fragment."))
    if any(c.isspace() for c in url):
        raise _invalid("webhook_url", _("The webhook URL must not contain spaces."))
    if settings.ECARD_WEBHOOK_PUBLIC_ONLY:
        if parts.scheme != "https":
            raise _invalid("webhook_url", _("This portal requires https webhook URLs."))
        literal = addresses.literal_address(parts.hostname)
        if is_loopback_host(parts.hostname) or (literal is not None and addresses.refused(literal)):
            raise _invalid("webhook_url", _("The webhook URL must point to a public address."))
    return url


def parse_public_key(text: str | bytes) -> str:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or standard base64 of its 32 raw bytes,
    returned as standard base64. A private key is refused: the portal never holds one."""
    raw_text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    raw_text = raw_text.strip()
    if not raw_text:
        raise _invalid("public_key", _("Give the partner's Ed25519 public key."))
    if "PRIVATE KEY" in raw_text:
        raise _invalid(
            "public_key",
            _("This is a private key: give the public key only (the portal never holds a partner's private key)."),
        )
    if raw_text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(raw_text.encode())
        except (ValueError, TypeError):
            raise _invalid("public_key", _("The PEM could not be read as a public key.")) from None
        if not isinstance(key, Ed25519PublicKey):
            raise _invalid("public_key", _("The key is not an Ed25519 key."))
        return signing.public_key_b64(key)
    try:
        raw = base64.b64decode(raw_text, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("public_key", _("Give a PEM public key or the standard base64 of its 32 raw bytes.")) from None
    if len(raw) != 32:
        raise _invalid("public_key", _("An Ed25519 public key is 32 bytes."))
    return signing.public_key_b64(Ed25519PublicKey.from_public_bytes(raw))


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise _invalid("name", _("The name is 1 to 64 characters."))
    return name


def _partner_audit(partner: Partner) -> dict:
    return {
        "code": partner.code,
        "name": partner.name,
        "kind": partner.kind,
        "state": partner.state,
        "webhook_url": partner.webhook_url,
        "deliveries_paused": partner.deliveries_paused,
        "rate_limit_per_second": partner.rate_limit_per_second,
    }


def _locked(partner: Partner) -> Partner:
    return Partner.objects.select_for_update(no_key=True).get(pk=partner.pk)


def _new_key_id(code: str) -> str:
    return f"{code}_{timezone.now():%Y%m%d}_{secrets.token_hex(6)}"


# --- Services ---------------------------------------------------------------------


@transaction.atomic
def partner_create(
    *, actor: Actor, code: str, name: str, kind: str, webhook_url: str = "", rate_limit_per_second: int = 200
) -> Partner:
    code = (code or "").strip()
    if not CODE_RE.match(code):
        raise _invalid("code", _("The code is 2 to 32 characters: lower-case letters, digits, - and _."))
    if kind not in PartnerKind.values:
        raise _invalid("kind", _("The kind is wallet or service_platform."))
    if Partner.objects.filter(code=code).exists():
        raise DomainError(PartnerErrorCode.PARTNER_EXISTS, _("A partner with this code already exists."), field="code")
    partner = Partner(
        code=code,
        name=_clean_name(name),
        kind=kind,
        webhook_url=clean_webhook_url(webhook_url),
        rate_limit_per_second=_clean_rate_limit(rate_limit_per_second),
    )
    partner.save(force_insert=True)
    audit_record(
        actor=actor,
        action="partner.create",
        object_type="partner",
        object_id=partner.code,
        after=_partner_audit(partner),
    )
    return partner


@transaction.atomic
def partner_key_add(*, actor: Actor, partner: Partner, public_key: str | bytes) -> PartnerKey:
    """Register one more Ed25519 public key for the partner (several for rotation); a new key id."""
    public_b64 = parse_public_key(public_key)
    partner = _locked(partner)
    if PartnerKey.objects.filter(public_key=public_b64, state=PartnerKeyState.ACTIVE).exists():
        raise DomainError(PartnerErrorCode.KEY_EXISTS, _("This public key is already registered."), field="public_key")
    key = PartnerKey(partner=partner, key_id=_new_key_id(partner.code), public_key=public_b64)
    key.save(force_insert=True)
    audit_record(
        actor=actor,
        action="partner_key.add",
        object_type="partner_key",
        object_id=key.key_id,
        after={"partner": partner.code, "key_id": key.key_id, "public_key": public_b64},
    )
    return key


@transaction.atomic
def partner_key_revoke(*, actor: Actor, key: PartnerKey, reason: str = "") -> PartnerKey:
    key = PartnerKey.objects.select_for_update().select_related("partner").get(pk=key.pk)
    if key.state == PartnerKeyState.REVOKED:
        raise DomainError(PartnerErrorCode.INVALID_STATE, _("This key is already revoked."))
    key.state = PartnerKeyState.REVOKED
    key.revoked_at = timezone.now()
    key.save(update_fields=["state", "revoked_at"])
    audit_record(
        actor=actor,
        action="partner_key.revoke",
        object_type="partner_key",
        object_id=key.key_id,
        before={"state": PartnerKeyState.ACTIVE},
        after={"state": key.state, "partner": key.partner.code},
        reason=reason,
    )
    return key


def _change(actor: Actor, partner: Partner, action: str, reason: str = "", **changes: object) -> Partner:
    partner = _locked(partner)
    before = _partner_audit(partner)
    for field, value in changes.items():
        setattr(partner, field, value)
    partner.save(update_fields=list(changes))
    audit_record(
        actor=actor,
        action=action,
        object_type="partner",
        object_id=partner.code,
        before=before,
        after=_partner_audit(partner),
        reason=reason,
    )
    return partner


@transaction.atomic
def partner_set_webhook_url(*, actor: Actor, partner: Partner, webhook_url: str, reason: str = "") -> Partner:
    return _change(actor, partner, "partner.set_webhook_url", reason, webhook_url=clean_webhook_url(webhook_url))


@transaction.atomic
def partner_suspend(*, actor: Actor, partner: Partner, reason: str = "") -> Partner:
    """A suspended partner's every request answers 403 `forbidden`."""
    if _locked(partner).state == PartnerState.SUSPENDED:
        raise DomainError(PartnerErrorCode.INVALID_STATE, _("This partner is already suspended."))
    return _change(actor, partner, "partner.suspend", reason, state=PartnerState.SUSPENDED)


@transaction.atomic
def partner_reactivate(*, actor: Actor, partner: Partner, reason: str = "") -> Partner:
    if _locked(partner).state == PartnerState.ACTIVE:
        raise DomainError(PartnerErrorCode.INVALID_STATE, _("This partner is already active."))
    return _change(actor, partner, "partner.reactivate", reason, state=PartnerState.ACTIVE)


@transaction.atomic
def partner_pause_deliveries(*, actor: Actor, partner: Partner, reason: str = "") -> Partner:
    """Webhooks wait (events keep accumulating and stay readable through `GET /events`)."""
    if _locked(partner).deliveries_paused:
        raise DomainError(PartnerErrorCode.INVALID_STATE, _("Deliveries to this partner are already paused."))
    return _change(actor, partner, "partner.pause_deliveries", reason, deliveries_paused=True)


@transaction.atomic
def partner_resume_deliveries(*, actor: Actor, partner: Partner, reason: str = "") -> Partner:
    if not _locked(partner).deliveries_paused:
        raise DomainError(PartnerErrorCode.INVALID_STATE, _("Deliveries to this partner are not paused."))
    partner = _change(actor, partner, "partner.resume_deliveries", reason, deliveries_paused=False)
    transaction.on_commit(delivery.kick_sweep)
    return partner


def _clean_rate_limit(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RATE_LIMIT:
        raise _invalid(
            "rate_limit_per_second", _("The rate limit is a whole number from 1 to 100000 requests per second.")
        )
    return value


@transaction.atomic
def partner_set_rate_limit(*, actor: Actor, partner: Partner, rate_limit_per_second: int) -> Partner:
    return _change(
        actor, partner, "partner.set_rate_limit", rate_limit_per_second=_clean_rate_limit(rate_limit_per_second)
    )
