"""Authentication of partner requests (PARTNER_API.md "Authentication: signed requests").

One DRF authentication class for every endpoint. The checks run in the
contract's order and the first failure answers; a nonce is recorded (in
Redis, shared by every web process) only once the signature has verified.
"""

import re
import time
from dataclasses import dataclass

from django.core.exceptions import RequestDataTooBig
from django.utils.encoding import escape_uri_path
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from payments import signing
from payments.models import Partner, PartnerKey, PartnerKeyState, PartnerState
from payments.problems import ApiError
from portal import fastcache

SCHEME = "ECARD-ED25519"
TIMESTAMP_WINDOW_SECONDS = 300
NONCE_TTL_SECONDS = 15 * 60
MAX_BODY_BYTES = 1024 * 1024

_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')
_REQUIRED = ("key_id", "timestamp", "nonce", "signature")


@dataclass(frozen=True)
class AuthenticatedPartner:
    """`request.user` of a signed partner request."""

    partner: Partner
    key: PartnerKey
    nonce: str

    is_authenticated = True
    is_anonymous = False

    @property
    def pk(self) -> int:
        return self.partner.pk


def parse_authorization(header: str) -> dict[str, str] | None:
    """The four parameters of the header, or None if it is missing or unparsable."""
    if not header.startswith(SCHEME + " "):
        return None
    params: dict[str, str] = {}
    for item in header[len(SCHEME) + 1:].split(","):
        match = _PARAM.fullmatch(item)
        if match is None or match.group(1) in params:
            return None
        params[match.group(1)] = match.group(2)
    if set(params) != set(_REQUIRED):
        return None
    # isascii: str.isdigit() accepts "²", which int() refuses.
    if not (params["timestamp"].isascii() and params["timestamp"].isdigit()) or len(params["timestamp"]) > 12:
        return None
    if not signing.NONCE_RE.match(params["nonce"]) or not params["key_id"] or len(params["key_id"]) > 64:
        return None
    return params


def request_target(request) -> str:
    """Path and query exactly as sent (gunicorn gives RAW_URI; otherwise rebuild it)."""
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if raw:
        if raw.startswith(("http://", "https://")):  # absolute-form request target
            raw = "/" + raw.split("/", 3)[3] if raw.count("/") >= 3 else "/"
        return raw
    path = escape_uri_path(request.META.get("SCRIPT_NAME", "") + request.META.get("PATH_INFO", ""))
    query = request.META.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


def _unauthorized(code: str, detail: str) -> ApiError:
    return ApiError(401, code, detail, headers={"WWW-Authenticate": SCHEME})


class PartnerSignatureAuthentication(BaseAuthentication):
    def authenticate(self, request: Request):
        django_request = request._request
        params = parse_authorization(django_request.META.get("HTTP_AUTHORIZATION", ""))
        if params is None:
            raise _unauthorized("authentication_required", "A valid ECARD-ED25519 Authorization header is required.")
        try:
            key = PartnerKey.objects.select_related("partner").get(key_id=params["key_id"])
        except PartnerKey.DoesNotExist:
            key = None
        if key is None:
            raise _unauthorized("unknown_key", "The key_id is not known.")
        length = django_request.META.get("CONTENT_LENGTH") or "0"
        if length.isascii() and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", "The body is larger than 1 MB.")
        try:
            body = django_request.body
        except RequestDataTooBig:
            raise ApiError(413, "payload_too_large", "The body is larger than 1 MB.") from None
        message = signing.request_string_to_sign(
            django_request.method, request_target(django_request), params["timestamp"], params["nonce"], body
        )
        if not signing.verify(key.public_key, message, params["signature"]):
            raise _unauthorized("invalid_signature", "The signature does not verify.")
        if abs(time.time() - int(params["timestamp"])) > TIMESTAMP_WINDOW_SECONDS:
            raise _unauthorized("stale_timestamp", "The timestamp is more than 300 s from the portal's clock.")
        if not fastcache.add_once(f"nonce:{key.key_id}:{params['nonce']}", timeout=NONCE_TTL_SECONDS):
            raise _unauthorized("replayed_request", "This nonce was already used with this key.")
        if key.state != PartnerKeyState.ACTIVE or key.partner.state != PartnerState.ACTIVE:
            raise ApiError(403, "forbidden", "The key is revoked or the partner is suspended.")
        return AuthenticatedPartner(partner=key.partner, key=key, nonce=params["nonce"]), key

    def authenticate_header(self, request: Request) -> str:
        return SCHEME


