"""Authentication of partner requests (PARTNER_API.md "Authentication: signed requests").

One DRF authentication class for every endpoint. The checks run in the
contract's order and the first failure answers; a nonce is recorded (in
Redis, shared by every web process) only once the signature has verified.
"""

import logging
import re
import secrets
import time
from dataclasses import dataclass

from django.core.exceptions import RequestDataTooBig
from django.utils.encoding import escape_uri_path
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from payments import rows, signing
from payments.api.problems import ApiError, ProblemCode
from payments.models import Partner, PartnerKey, PartnerKeyState, PartnerState
from portal import fastcache, prepared

logger = logging.getLogger(__name__)

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
    # This request's number in the partner's rate-limit second (counted with the nonce, one Redis
    # round trip); 0 if not counted here.
    rate_count: int = 0

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
    for item in header[len(SCHEME) + 1 :].split(","):
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


# --- The key of a request: one prepared query, no ORM ---------------------------------------------


def _columns(model, alias: str) -> str:
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


_KEY_SQL: str | None = None


def _key_sql() -> str:
    global _KEY_SQL
    if _KEY_SQL is None:
        _KEY_SQL = (
            f"SELECT {_columns(PartnerKey, 'k')}, {_columns(Partner, 'p')} "  # noqa: S608 (names from the models; values are parameters)
            f'FROM "{PartnerKey._meta.db_table}" k JOIN "{Partner._meta.db_table}" p ON p."id" = k."partner_id" '
            f'WHERE k."key_id" = %s'
        )
    return _KEY_SQL


def _key_row(key_id: str) -> tuple | None:
    if "\x00" in key_id:  # PostgreSQL text cannot hold NUL; no key has one
        return None
    return prepared.fetch_one(_key_sql(), [key_id])


def _key_from_row(row: tuple) -> PartnerKey:
    """Fresh model instances for each request (a request may not change another's)."""
    split = len(_KEY_FIELDS)
    key = rows.loaded(PartnerKey, _KEY_FIELDS, list(row[:split]))
    rows.related(key, "partner", rows.loaded(Partner, _PARTNER_FIELDS, list(row[split:])))
    return key


_KEY_FIELDS = [field.attname for field in PartnerKey._meta.concrete_fields]
_PARTNER_FIELDS = [field.attname for field in Partner._meta.concrete_fields]


def partner_key_lookup(key_id: str) -> PartnerKey | None:
    """The key and its partner (as `select_related("partner")` would give), read from the database."""
    row = _key_row(key_id)
    return None if row is None else _key_from_row(row)


# --- The per-process key cache, checked against a generation that every change replaces ------------
#
# Each web process keeps the key rows it has read, each with the generation (a random token in Redis)
# that was current BEFORE its database read. The nonce's round trip returns the current generation
# (`_NONCE_AND_COUNT` below); a cached row is trusted only if it was read under that
# generation, else it is read again. Every save or delete of a Partner or a PartnerKey replaces the
# generation, inside its transaction and again once it commits (`partner_keys_changed`), so a row
# read before the commit is never trusted after it: a revoked key or a suspended partner is refused
# from the first request that starts after the change has committed, as without a cache. Rows are
# also re-read after `KEY_CACHE_SECONDS` whatever the generation says (should a replacement after
# commit have failed with Redis unreachable).

KEY_CACHE_SECONDS = 60.0
GENERATION_KEY = "partner-keys:generation"
_UNTRUSTED = ""  # a row read from the database in this request: its generation is not known yet


@dataclass(frozen=True)
class _CachedKey:
    key: PartnerKey  # never handed out: each request gets a copy (`_copy_key`)
    generation: str
    read_at: float  # time.monotonic()


_key_cache: dict[str, _CachedKey] = {}


def _new_generation() -> str:
    return secrets.token_hex(8)


def partner_keys_changed() -> None:
    """A Partner or PartnerKey row is being saved or deleted: no web process trusts its cached key rows
    from now on, nor (replaced again after commit) the rows it reads before the change commits."""
    client = fastcache.redis_client()
    from django.core.cache import cache
    from django.db import transaction

    full_key = cache.make_key(GENERATION_KEY)
    client.set(full_key, _new_generation())  # inside the transaction: an error here rolls the change back

    def after_commit() -> None:
        try:
            client.set(full_key, _new_generation())
        except Exception:  # cached rows are re-read within KEY_CACHE_SECONDS anyway
            logger.warning("could not replace the partner-key generation after commit")

    transaction.on_commit(after_commit)


def forget_cached_keys() -> None:
    """Drop this process's cached key rows (tests whose rolled-back rows no save announced)."""
    _key_cache.clear()


# Parsed public keys: a key's public half never changes under its key_id (bounded, per process).
_public_keys: dict[tuple[str, str], object] = {}


def _public_key(key: PartnerKey):
    cache_key = (key.key_id, key.public_key)
    parsed = _public_keys.get(cache_key)
    if parsed is None:
        try:
            parsed = signing.public_key_from_b64(key.public_key)
        except ValueError:
            return key.public_key  # signing.verify() answers False for it
        if len(_public_keys) >= 1024:
            _public_keys.clear()
        _public_keys[cache_key] = parsed
    return parsed


# --- The nonce, the rate counter and the key generation: one Redis round trip ----------------------

# SET NX the nonce; only if it was new, count the request in the partner's current second. Atomic, so
# a replayed request is not counted, exactly as with two separate calls. Then the key generation (set
# to ARGV[3] if Redis has none, as after a restart), which tells whether a cached key row is current.
_NONCE_AND_COUNT = """
local generation = redis.call('GET', KEYS[1])
if not generation then
  redis.call('SET', KEYS[1], ARGV[3], 'NX')
  generation = redis.call('GET', KEYS[1])
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return {-1, generation} end
if #KEYS < 3 then return {0, generation} end
local count = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return {count, generation}
"""
RATE_KEY_TTL_SECONDS = 3


def rate_key(partner_pk: int, second: int) -> str:
    return f"rate:{partner_pk}:{second}"


def _record_nonce_and_count(nonce_key: str, count_key: str | None) -> tuple[int | None, str]:
    """(None if the nonce was used, else the request's count in `count_key`, 0 if not counted;
    the key generation)."""
    client = fastcache.redis_client()
    from django.core.cache import cache

    script = getattr(client, "_ecard_nonce_script", None)
    if script is None:
        script = client._ecard_nonce_script = client.register_script(_NONCE_AND_COUNT)
    keys = [cache.make_key(GENERATION_KEY), cache.make_key(nonce_key)]
    if count_key:
        keys.append(cache.make_key(count_key))
    result, generation = script(keys=keys, args=[NONCE_TTL_SECONDS, RATE_KEY_TTL_SECONDS, _new_generation()])
    generation = generation.decode() if isinstance(generation, bytes) else str(generation)
    result = int(result)
    return (None if result < 0 else result), generation


def _cached_key(key_id: str) -> tuple[PartnerKey | None, str | None]:
    """The key (None if unknown) and the generation its cached row was read under; None if the row
    was read from the database just now."""
    entry = _key_cache.get(key_id)
    if entry is not None and time.monotonic() - entry.read_at < KEY_CACHE_SECONDS:
        return _copy_key(entry.key), entry.generation
    row = _key_row(key_id)
    if row is None:
        _key_cache.pop(key_id, None)
        return None, None
    # Its generation is not known (the nonce's round trip comes after this read): the next request
    # reads it again, under the generation its round trip returns, and trusts it from then on.
    _remember(key_id, row, _UNTRUSTED)
    return _key_from_row(row), None


def _remember(key_id: str, row: tuple, generation: str) -> None:
    if len(_key_cache) >= 1024 and key_id not in _key_cache:
        _key_cache.clear()
    _key_cache[key_id] = _CachedKey(_key_from_row(row), generation, time.monotonic())


def _copy_key(cached: PartnerKey) -> PartnerKey:
    """A request's own PartnerKey and Partner, equal to what `_key_from_row` builds from the same row,
    from the cached instances' values (a request may change its instances; no other request sees that)."""
    partner = cached._state.fields_cache["partner"]
    key = rows.loaded(PartnerKey, _KEY_FIELDS, [cached.__dict__[name] for name in _KEY_FIELDS])
    values = [partner.__dict__[name] for name in _PARTNER_FIELDS]
    rows.related(key, "partner", rows.loaded(Partner, _PARTNER_FIELDS, values))
    return key


def _active(key: PartnerKey) -> bool:
    return key.state == PartnerKeyState.ACTIVE and key.partner.state == PartnerState.ACTIVE


class PartnerSignatureAuthentication(BaseAuthentication):
    def authenticate(self, request: Request):
        django_request = request._request
        params = parse_authorization(django_request.META.get("HTTP_AUTHORIZATION", ""))
        if params is None:
            raise _unauthorized(
                ProblemCode.AUTHENTICATION_REQUIRED, "A valid ECARD-ED25519 Authorization header is required."
            )
        key_id = params["key_id"]
        key, generation = _cached_key(key_id)
        if key is None:
            raise _unauthorized(ProblemCode.UNKNOWN_KEY, "The key_id is not known.")
        length = django_request.META.get("CONTENT_LENGTH") or "0"
        if length.isascii() and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise ApiError(413, ProblemCode.PAYLOAD_TOO_LARGE, "The body is larger than 1 MB.")
        try:
            body = django_request.body
        except RequestDataTooBig:
            raise ApiError(413, ProblemCode.PAYLOAD_TOO_LARGE, "The body is larger than 1 MB.") from None
        message = signing.request_string_to_sign(
            django_request.method or "", request_target(django_request), params["timestamp"], params["nonce"], body
        )
        if not signing.verify(_public_key(key), message, params["signature"]):
            raise _unauthorized(ProblemCode.INVALID_SIGNATURE, "The signature does not verify.")
        now = time.time()
        if abs(now - int(params["timestamp"])) > TIMESTAMP_WINDOW_SECONDS:
            raise _unauthorized(
                ProblemCode.STALE_TIMESTAMP, "The timestamp is more than 300 s from the portal's clock."
            )
        # The request is counted against the partner's rate limit (api_base._rate_limit decides)
        # in the same round trip as its nonce is recorded; a refused one (replayed, forbidden) is not.
        count, current = _record_nonce_and_count(
            f"nonce:{key_id}:{params['nonce']}", rate_key(key.partner.pk, int(now)) if _active(key) else None
        )
        if count is None:
            raise _unauthorized(ProblemCode.REPLAYED_REQUEST, "This nonce was already used with this key.")
        if generation is not None and generation != current:
            # A cached row not known to be current (read before the last change to partners or keys,
            # or under an unknown generation): read it again, under the generation just returned.
            counted = _active(key)
            row = _key_row(key_id)
            if row is None:
                _key_cache.pop(key_id, None)
                raise _unauthorized(ProblemCode.UNKNOWN_KEY, "The key_id is not known.")
            _remember(key_id, row, current)
            fresh = _key_from_row(row)
            if fresh.public_key != key.public_key and not signing.verify(
                _public_key(fresh), message, params["signature"]
            ):
                raise _unauthorized(ProblemCode.INVALID_SIGNATURE, "The signature does not verify.")
            key = fresh
            if not counted:  # counted in its second only if the key was active as first read
                count = 0
        if not _active(key):
            raise ApiError(403, ProblemCode.FORBIDDEN, "The key is revoked or the partner is suspended.")
        return AuthenticatedPartner(partner=key.partner, key=key, nonce=params["nonce"], rate_count=count), key

    def authenticate_header(self, request: Request) -> str:
        return SCHEME
