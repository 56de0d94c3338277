"""QR tokens (PARTNER_API.md "QR tokens"): minting, and reading one back.

`v1.<base64url(payload)>.<base64url(signature)>`, unpadded, where the payload
is compact JSON `{"kid","cn","lnk","fb","jti","iat","exp"}` and the signature
is Ed25519 by the portal key `kid` over the ASCII bytes `v1.<base64url(payload)>`.
Tokens are checked against every published portal key, so that a rotation
does not break tokens minted just before it. Whether a token was used is known
only from its `QrToken` row.
"""

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from insurance.models import LIVE_STATES, Certificate, CertificateState
from payments import keys, signing
from payments.models import BindingState, FamilyBinding, LinkageState, QrToken, WalletLinkage
from portal.actors import Actor
from portal.errors import DomainError

VERSION = "v1"
TOKEN_TTL = timedelta(seconds=60)
MAX_TOKEN_LENGTH = 2048
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url; raises ValueError on anything else."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not unpadded base64url") from exc


def _invalid() -> DomainError:
    return DomainError("invalid_token", _("This is not an authentic QR token."), status=422)


# --- Minting ----------------------------------------------------------------


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_at: datetime
    row: QrToken


def _require_active(certificate: Certificate | None) -> Certificate:
    if certificate is None or certificate.state != CertificateState.ACTIVE:
        raise DomainError("certificate_not_active", _("The e-card is not active."))
    return certificate


@transaction.atomic
def qr_token_mint(*, actor: Actor, linkage: WalletLinkage, family_binding: FamilyBinding | None = None,
                  now: datetime | None = None) -> MintedToken:
    """A 60-second token for the linked citizen's card, or for the beneficiary of an active binding
    made through this linkage. Earlier tokens stay valid until they expire.

    The `QrToken` row is the record of the mint (who: the linkage's partner; when; which card); it is
    not written to the audit chain, whose single lock would serialise every payment at the counter.
    """
    linkage = WalletLinkage.objects.select_related("certificate", "partner").get(pk=linkage.pk)
    if linkage.state != LinkageState.ACTIVE:
        raise DomainError("linkage_inactive", _("This linkage has ended."))
    if family_binding is not None:
        family_binding = FamilyBinding.objects.select_related("beneficiary").get(pk=family_binding.pk)
        if family_binding.holder_linkage_id != linkage.pk:
            raise DomainError("not_found", _("Not found."), status=404)
        if family_binding.state != BindingState.ACTIVE:
            raise DomainError("binding_inactive", _("This family binding is not active."))
    _require_active(linkage.certificate)
    if family_binding is not None:
        certificate = _require_active(
            Certificate.objects.filter(citizen_id=family_binding.beneficiary_id, state__in=LIVE_STATES).first()
        )
    else:
        certificate = linkage.certificate
    key = keys.current_signing_key()
    issued_at = (now or timezone.now()).replace(microsecond=0)
    expires_at = issued_at + TOKEN_TTL
    jti = secrets.token_urlsafe(18)
    payload = {
        "kid": key.key_id,
        "cn": certificate.number,
        "lnk": linkage.public_id,
        "fb": family_binding.public_id if family_binding is not None else None,
        "jti": jti,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    signed_part = f"{VERSION}.{b64url_encode(json.dumps(payload, separators=(',', ':')).encode())}"
    signature = key.private_key.sign(signed_part.encode("ascii"))
    row = QrToken.objects.create(jti=jti, certificate=certificate, linkage=linkage, family_binding=family_binding,
                                 issued_at=issued_at, expires_at=expires_at)
    return MintedToken(token=f"{signed_part}.{b64url_encode(signature)}", expires_at=expires_at, row=row)


# --- Reading ----------------------------------------------------------------


def _claims(token: object) -> dict:
    """The payload of an authentic token (signature verified with the key it names), else invalid_token."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise _invalid()
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise _invalid()
    try:
        payload_bytes = b64url_decode(parts[1])
        signature = b64url_decode(parts[2])
        payload = json.loads(payload_bytes)
    except (ValueError, RecursionError):
        raise _invalid() from None
    if not isinstance(payload, dict) or not isinstance(payload.get("kid"), str) or len(signature) != 64:
        raise _invalid()
    public_key = keys.public_key_for(payload["kid"])
    if public_key is None:
        raise _invalid()
    try:
        signing.public_key_from_b64(public_key).verify(signature, f"{VERSION}.{parts[1]}".encode("ascii"))
    except (InvalidSignature, ValueError):
        raise _invalid() from None
    for name in ("cn", "lnk", "jti"):
        if not isinstance(payload.get(name), str):
            raise _invalid()
    if payload.get("fb") is not None and not isinstance(payload["fb"], str):
        raise _invalid()
    for name in ("iat", "exp"):
        if type(payload.get(name)) is not int:
            raise _invalid()
    return payload


def token_read(token: object, *, for_update: bool = False) -> QrToken:
    """The `QrToken` an authentic, unexpired token stands for.

    Raises 422 `invalid_token` (anything not authentic, malformed included) or 422 `token_expired`.
    `for_update` locks the row (for consuming it in a settlement).
    """
    claims = _claims(token)
    rows = QrToken.objects.select_related(
        "certificate__citizen", "linkage", "family_binding__holder_citizen"
    )
    if for_update:
        rows = rows.select_for_update(of=("self",))
    try:  # get(), not first(): no ORDER BY to compile and plan on the hottest read of the API
        row = rows.get(jti=claims["jti"])
    except QrToken.DoesNotExist:
        row = None
    if (
        row is None
        or row.certificate.number != claims["cn"]
        or row.linkage.public_id != claims["lnk"]
        or (row.family_binding.public_id if row.family_binding_id else None) != claims["fb"]
    ):
        raise _invalid()
    if timezone.now() >= row.expires_at:
        raise DomainError("token_expired", _("This QR token has expired: ask for a new one."), status=422)
    return row
