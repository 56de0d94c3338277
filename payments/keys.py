"""The portal's own Ed25519 signing keys: rotation, encryption at rest, the current key.

Private halves are stored as `version (1 byte) | nonce (12) | AES-GCM(raw key)`
under `settings.ECARD_SIGNING_KEY_ENCRYPTION_KEYS` (highest version encrypts,
every version decrypts), with the key id bound as associated data so that a
ciphertext cannot be moved to another row.
"""

import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from payments import signing
from payments.models import PortalKey, PortalKeyState
from portal import crypto, unavailable
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError


class PortalKeyErrorCode(StrEnum):
    """The codes of the signing keys' domain errors: a stable contract, like every app's."""

    # Rotating while a next key waits, activating when none does (409).
    NEXT_KEY_EXISTS = "next_key_exists"
    NO_NEXT_KEY = "no_next_key"
    # Signing before the first rotation (503).
    NO_SIGNING_KEY = "no_signing_key"


# How long a process keeps the active key before reading it again: rotation is noticed within this.
CACHE_SECONDS = float(getattr(settings, "ECARD_SIGNING_KEY_CACHE_SECONDS", 5))


def _aad(key_id: str) -> bytes:
    return f"portal_key:{key_id}".encode()


def encrypt_private_key(raw: bytes, *, key_id: str) -> bytes:
    return crypto.encrypt_bytes(raw, keys=settings.ECARD_SIGNING_KEY_ENCRYPTION_KEYS, associated_data=_aad(key_id))


def decrypt_private_key(blob: bytes | memoryview, *, key_id: str) -> bytes:
    return crypto.decrypt_bytes(blob, keys=settings.ECARD_SIGNING_KEY_ENCRYPTION_KEYS, associated_data=_aad(key_id))


def _new_key_id() -> str:
    return f"ecard_{timezone.now():%Y%m%d}_{secrets.token_hex(6)}"


def _key_audit(key: PortalKey) -> dict:
    return {"key_id": key.key_id, "state": key.state, "public_key": key.public_key}


# --- Services --------------------------------------------------------------


@transaction.atomic
def portal_key_create(*, actor: Actor) -> PortalKey:
    """The first key becomes `active`; after that a new key is `next` (at most one)."""
    # Serialise rotations: lock every existing key row (there are few).
    existing = list(PortalKey.objects.select_for_update().all())
    if any(k.state == PortalKeyState.NEXT for k in existing):
        raise DomainError(PortalKeyErrorCode.NEXT_KEY_EXISTS, _("A next key already exists: activate it first."))
    has_active = any(k.state == PortalKeyState.ACTIVE for k in existing)
    private = signing.generate_private_key()
    key_id = _new_key_id()
    now = timezone.now()
    key = PortalKey(
        key_id=key_id,
        public_key=signing.public_key_b64(private),
        private_key_enc=encrypt_private_key(signing.private_key_to_raw(private), key_id=key_id),
        state=PortalKeyState.NEXT if has_active else PortalKeyState.ACTIVE,
        activated_at=None if has_active else now,
    )
    key.save(force_insert=True)
    audit_record(
        actor=actor, action="portal_key.create", object_type="portal_key", object_id=key.key_id, after=_key_audit(key)
    )
    return key


@transaction.atomic
def portal_key_activate_next(*, actor: Actor) -> PortalKey:
    """`next` becomes `active`; the old active key is `retired` (and stays listed)."""
    keys = list(PortalKey.objects.select_for_update().all())
    nxt = next((k for k in keys if k.state == PortalKeyState.NEXT), None)
    if nxt is None:
        raise DomainError(PortalKeyErrorCode.NO_NEXT_KEY, _("There is no next key to activate: rotate first."))
    now = timezone.now()
    for old in keys:
        if old.state == PortalKeyState.ACTIVE:
            before = _key_audit(old)
            old.state = PortalKeyState.RETIRED
            old.retired_at = now
            old.save(update_fields=["state", "retired_at"])
            audit_record(
                actor=actor,
                action="portal_key.retire",
                object_type="portal_key",
                object_id=old.key_id,
                before=before,
                after=_key_audit(old),
            )
    before = _key_audit(nxt)
    nxt.state = PortalKeyState.ACTIVE
    nxt.activated_at = now
    nxt.save(update_fields=["state", "activated_at"])
    audit_record(
        actor=actor,
        action="portal_key.activate",
        object_type="portal_key",
        object_id=nxt.key_id,
        before=before,
        after=_key_audit(nxt),
    )
    _forget_cached_key()
    return nxt


# --- Selectors -------------------------------------------------------------


def published_keys() -> list[PortalKey]:
    """Every key partners may meet: next, active and retired, oldest first."""
    return list(PortalKey.objects.order_by("created_at", "id"))


_public_keys: dict[str, tuple[str, float]] = {}


def public_key_for(key_id: str) -> str | None:
    """A published key's public half. A key's public half never changes, so a found key
    is kept in the process (verifying QR tokens must not cost a query each)."""
    cached = _public_keys.get(key_id)
    if cached is not None:
        return cached[0]
    row = PortalKey.objects.filter(key_id=key_id).values_list("public_key", flat=True).first()
    if row is not None:
        if len(_public_keys) >= 64:  # bounded; only a long run of rotations (or tests) gets here
            _public_keys.clear()
        _public_keys[key_id] = (row, time.monotonic())
    return row


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey


_cache_lock = threading.Lock()
_cached: tuple[float, SigningKey] | None = None


def _forget_cached_key() -> None:
    global _cached
    with _cache_lock:
        _cached = None


def current_signing_key() -> SigningKey:
    """The active key, cached per process for a few seconds (rotation is noticed within CACHE_SECONDS).

    While the database cannot be reached, the key read last goes on signing (the 503 that says so,
    above all): a key stays published for at least 30 days after it retires."""
    global _cached
    now = time.monotonic()
    cached = _cached
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        row = PortalKey.objects.filter(state=PortalKeyState.ACTIVE).first()
    except Exception as exc:
        if cached is None or unavailable.unreachable_backend(exc) != "database":
            raise
        return cached[1]
    if row is None:
        raise DomainError(
            PortalKeyErrorCode.NO_SIGNING_KEY,
            _("The portal has no active signing key: run rotate_portal_key."),
            status=503,
        )
    key = SigningKey(
        row.key_id, signing.private_key_from_raw(decrypt_private_key(row.private_key_enc, key_id=row.key_id))
    )
    with _cache_lock:
        _cached = (now + CACHE_SECONDS, key)
    return key
