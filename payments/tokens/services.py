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
from datetime import date, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from insurance.models import LIVE_STATES, Certificate, CertificateState, Citizen
from payments import keys, rows, signing
from payments.models import BindingState, FamilyBinding, LinkageState, QrToken, WalletLinkage
from payments.tokens.errors import TokenErrorCode
from portal import prepared
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
    return DomainError(TokenErrorCode.INVALID_TOKEN, _("This is not an authentic QR token."), status=422)


# --- Minting ----------------------------------------------------------------


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_at: datetime
    row: QrToken


def _require_active(certificate: Certificate | None) -> Certificate:
    if certificate is None or certificate.state != CertificateState.ACTIVE:
        raise DomainError(TokenErrorCode.CERTIFICATE_NOT_ACTIVE, _("The e-card is not active."))
    return certificate


def _signed_token(
    *, certificate_number: str, linkage_public_id: str, binding_public_id: str | None, now: datetime | None
) -> tuple[str, str, datetime, datetime]:
    """(token, jti, issued_at, expires_at) of a fresh token, signed once by the current portal key."""
    key = keys.current_signing_key()
    issued_at = (now or timezone.now()).replace(microsecond=0)
    expires_at = issued_at + TOKEN_TTL
    jti = secrets.token_urlsafe(18)
    payload = {
        "kid": key.key_id,
        "cn": certificate_number,
        "lnk": linkage_public_id,
        "fb": binding_public_id,
        "jti": jti,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    signed_part = f"{VERSION}.{b64url_encode(json.dumps(payload, separators=(',', ':')).encode())}"
    signature = key.private_key.sign(signed_part.encode("ascii"))
    return f"{signed_part}.{b64url_encode(signature)}", jti, issued_at, expires_at


@transaction.atomic
def qr_token_mint(
    *, actor: Actor, linkage: WalletLinkage, family_binding: FamilyBinding | None = None, now: datetime | None = None
) -> MintedToken:
    """A 60-second token for the linked citizen's card, or for the beneficiary of an active binding
    made through this linkage. Earlier tokens stay valid until they expire.

    The `QrToken` row is the record of the mint (who: the linkage's partner; when; which card); it is
    not written to the audit chain, whose single lock would serialise every payment at the counter.
    The partner API mints for the holder through `qr_token_mint_for_holder` (the same checks and
    token in two statements); this is the general form, and the one for a binding's beneficiary.
    """
    linkage = WalletLinkage.objects.select_related("certificate", "partner").get(pk=linkage.pk)
    if linkage.state != LinkageState.ACTIVE:
        raise DomainError(TokenErrorCode.LINKAGE_INACTIVE, _("This linkage has ended."))
    if family_binding is not None:
        family_binding = FamilyBinding.objects.select_related("beneficiary").get(pk=family_binding.pk)
        if family_binding.holder_linkage_id != linkage.pk:
            raise DomainError(TokenErrorCode.NOT_FOUND, _("Not found."), status=404)
        if family_binding.state != BindingState.ACTIVE:
            raise DomainError(TokenErrorCode.BINDING_INACTIVE, _("This family binding is not active."))
    _require_active(linkage.certificate)
    if family_binding is not None:
        certificate = _require_active(
            Certificate.objects.filter(citizen_id=family_binding.beneficiary_id, state__in=LIVE_STATES).first()
        )
    else:
        certificate = linkage.certificate
    token, jti, issued_at, expires_at = _signed_token(
        certificate_number=certificate.number,
        linkage_public_id=linkage.public_id,
        binding_public_id=family_binding.public_id if family_binding is not None else None,
        now=now,
    )
    row = QrToken.objects.create(
        jti=jti,
        certificate=certificate,
        linkage=linkage,
        family_binding=family_binding,
        issued_at=issued_at,
        expires_at=expires_at,
    )
    return MintedToken(token=token, expires_at=expires_at, row=row)


@dataclass(frozen=True)
class MintTarget:
    """A partner's linkage and its card, as minting for the holder needs them (`mint_target_read`)."""

    linkage_id: int
    linkage_public_id: str
    linkage_state: str
    certificate_id: int
    certificate_number: str
    certificate_state: str


_MINT_TARGET_SQL: str | None = None


def _mint_target_sql() -> str:
    global _MINT_TARGET_SQL
    if _MINT_TARGET_SQL is None:
        _MINT_TARGET_SQL = (
            'SELECT l."id", l."state", l."certificate_id", c."number", c."state", l."partner_id" '  # noqa: S608 (names from the models; values are parameters)
            f'FROM "{WalletLinkage._meta.db_table}" l '
            f'JOIN "{Certificate._meta.db_table}" c ON c."id" = l."certificate_id" '
            # By the unique public id alone, the partner compared in Python: a generic plan for
            # `l."partner_id" = %s AND ...` may pick an index on the partner and filter all its linkages.
            'WHERE l."public_id" = %s'
        )
    return _MINT_TARGET_SQL


def mint_target_read(*, partner_id: int, linkage_public_id: str) -> MintTarget | None:
    """This partner's linkage `linkage_public_id` with its card's number and state, or None (another
    partner's included): one prepared query, no ORM (every payment at the counter starts here)."""
    row = prepared.fetch_one(_mint_target_sql(), [linkage_public_id])
    if row is None or row[5] != partner_id:
        return None
    linkage_id, linkage_state, certificate_id, certificate_number, certificate_state, _ = row
    return MintTarget(
        linkage_id=linkage_id,
        linkage_public_id=linkage_public_id,
        linkage_state=linkage_state,
        certificate_id=certificate_id,
        certificate_number=certificate_number,
        certificate_state=certificate_state,
    )


_INSERT_SQL: str | None = None


def _insert_sql() -> str:
    global _INSERT_SQL
    if _INSERT_SQL is None:
        _INSERT_SQL = (
            f'INSERT INTO "{QrToken._meta.db_table}" '  # noqa: S608 (names from the models; values are parameters)
            '("jti", "certificate_id", "linkage_id", "family_binding_id", "issued_at", "expires_at", "used_at") '
            'VALUES (%s, %s, %s, NULL, %s, %s, NULL) RETURNING "id"'
        )
    return _INSERT_SQL


def qr_token_mint_for_holder(*, actor: Actor, target: MintTarget, now: datetime | None = None) -> MintedToken:
    """`qr_token_mint` for the linkage's holder, from `mint_target_read`'s row: the same checks, errors
    and token, then one prepared INSERT of the `QrToken`. A single statement is its own transaction,
    so no BEGIN/COMMIT; as in `qr_token_mint` (READ COMMITTED, no lock), a linkage ended between the
    read and the INSERT yields a token minted just before the end, which the settlement refuses."""
    if target.linkage_state != LinkageState.ACTIVE:
        raise DomainError(TokenErrorCode.LINKAGE_INACTIVE, _("This linkage has ended."))
    if target.certificate_state != CertificateState.ACTIVE:
        raise DomainError(TokenErrorCode.CERTIFICATE_NOT_ACTIVE, _("The e-card is not active."))
    token, jti, issued_at, expires_at = _signed_token(
        certificate_number=target.certificate_number,
        linkage_public_id=target.linkage_public_id,
        binding_public_id=None,
        now=now,
    )
    row = QrToken(
        jti=jti,
        certificate_id=target.certificate_id,
        linkage_id=target.linkage_id,
        family_binding=None,
        issued_at=issued_at,
        expires_at=expires_at,
        used_at=None,
    )
    inserted = prepared.fetch_one(_insert_sql(), [jti, target.certificate_id, target.linkage_id, issued_at, expires_at])
    if inserted is None:  # INSERT ... RETURNING always returns the row
        raise RuntimeError("the QR token INSERT returned no row")
    rows.mark_saved(row, inserted[0])
    return MintedToken(token=token, expires_at=expires_at, row=row)


# --- Reading ----------------------------------------------------------------


_parsed_public_keys: dict[str, tuple[str, Ed25519PublicKey]] = {}


def _portal_public_key(key_id: str) -> Ed25519PublicKey | None:
    """The parsed public half of a published portal key (parsed once per process: it never changes)."""
    public_b64 = keys.public_key_for(key_id)
    if public_b64 is None:
        return None
    cached = _parsed_public_keys.get(key_id)
    if cached is not None and cached[0] == public_b64:
        return cached[1]
    try:
        parsed = signing.public_key_from_b64(public_b64)
    except ValueError:
        return None
    if len(_parsed_public_keys) < 64:
        _parsed_public_keys[key_id] = (public_b64, parsed)
    return parsed


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
    public_key = _portal_public_key(payload["kid"])
    if public_key is None:
        raise _invalid()
    try:
        public_key.verify(signature, f"{VERSION}.{parts[1]}".encode("ascii"))
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


def token_claims(token: object) -> dict:
    """The payload of an authentic token, else 422 `invalid_token` (expiry and use are the row's to tell).

    For the settlement's consuming read (payments/settlements/store.py), which compares the
    claims with the row as `token_read` does, in its own one-statement query."""
    claims = _claims(token)
    if "\x00" in claims["jti"]:  # PostgreSQL text cannot hold NUL; no token has one
        raise _invalid()
    return claims


def token_check_row(
    claims: dict,
    *,
    found: bool,
    certificate_number: str | None,
    linkage_public_id: str | None,
    binding_public_id: str | None,
    expires_at: datetime | None,
) -> None:
    """`token_read`'s checks of the row against the claims: 422 `invalid_token`, then `token_expired`."""
    if (
        not found
        or certificate_number != claims["cn"]
        or linkage_public_id != claims["lnk"]
        or binding_public_id != claims["fb"]
        or expires_at is None
    ):
        raise _invalid()
    if timezone.now() >= expires_at:
        raise DomainError(TokenErrorCode.TOKEN_EXPIRED, _("This QR token has expired: ask for a new one."), status=422)


def token_read(token: object, *, for_update: bool = False) -> QrToken:
    """The `QrToken` an authentic, unexpired token stands for.

    Raises 422 `invalid_token` (anything not authentic, malformed included) or 422 `token_expired`.
    `for_update` locks the row (for consuming it in a settlement).
    """
    claims = _claims(token)
    rows = QrToken.objects.select_related("certificate__citizen", "linkage", "family_binding__holder_citizen")
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
        or (row.family_binding.public_id if row.family_binding is not None else None) != claims["fb"]
    ):
        raise _invalid()
    if timezone.now() >= row.expires_at:
        raise DomainError(TokenErrorCode.TOKEN_EXPIRED, _("This QR token has expired: ask for a new one."), status=422)
    return row


@dataclass(frozen=True)
class VerifiedToken:
    """What `POST /certificates/verify` answers about a token: `token_read`'s checks, one narrow row."""

    certificate_number: str
    certificate_state: str
    used: bool
    expires_at: datetime
    citizen_name: str
    citizen_id_number_masked: str
    citizen_sex: str
    citizen_birth_date: date
    citizen_region_code: str
    citizen_scheme: str
    binding_relationship: str | None
    binding_holder_name: str | None


_VERIFY_SQL: str | None = None


def _verify_sql() -> str:
    global _VERIFY_SQL
    if _VERIFY_SQL is None:
        tables = {
            name: model._meta.db_table
            for name, model in (
                ("token", QrToken),
                ("certificate", Certificate),
                ("citizen", Citizen),
                ("linkage", WalletLinkage),
                ("binding", FamilyBinding),
            )
        }
        _VERIFY_SQL = (
            'SELECT t."used_at", t."expires_at", c."number", c."state", z."name", z."id_number_masked", z."sex", '  # noqa: S608 (names from the models; values are parameters)
            'z."birth_date", z."region_id", z."scheme", l."public_id", b."public_id", b."relationship", h."name" '
            f'FROM "{tables["token"]}" t '
            f'JOIN "{tables["certificate"]}" c ON c."id" = t."certificate_id" '
            f'JOIN "{tables["citizen"]}" z ON z."id" = c."citizen_id" '
            f'JOIN "{tables["linkage"]}" l ON l."id" = t."linkage_id" '
            f'LEFT JOIN "{tables["binding"]}" b ON b."id" = t."family_binding_id" '
            f'LEFT JOIN "{tables["citizen"]}" h ON h."id" = b."holder_citizen_id" '
            'WHERE t."jti" = %s'
        )
    return _VERIFY_SQL


def token_verify_read(token: object) -> VerifiedToken:
    """`token_read` for verification, without the ORM: the same checks and errors, one prepared query
    of only the columns the answer needs (the hottest read of the partner API)."""
    claims = _claims(token)
    if "\x00" in claims["jti"]:  # PostgreSQL text cannot hold NUL; no token has one
        raise _invalid()
    row = prepared.fetch_one(_verify_sql(), [claims["jti"]])
    if row is None:
        raise _invalid()
    (
        used_at,
        expires_at,
        number,
        state,
        name,
        id_number_masked,
        sex,
        birth_date,
        region_code,
        scheme,
        linkage_public_id,
        binding_public_id,
        relationship,
        holder_name,
    ) = row
    if number != claims["cn"] or linkage_public_id != claims["lnk"] or binding_public_id != claims["fb"]:
        raise _invalid()
    if timezone.now() >= expires_at:
        raise DomainError(TokenErrorCode.TOKEN_EXPIRED, _("This QR token has expired: ask for a new one."), status=422)
    return VerifiedToken(
        certificate_number=number,
        certificate_state=state,
        used=used_at is not None,
        expires_at=expires_at,
        citizen_name=name,
        citizen_id_number_masked=id_number_masked,
        citizen_sex=sex,
        citizen_birth_date=birth_date,
        citizen_region_code=region_code,
        citizen_scheme=scheme,
        binding_relationship=relationship,
        binding_holder_name=holder_name,
    )
