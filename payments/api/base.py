"""What every authenticated partner endpoint shares: signed-request
authentication, response signing, problem+json errors, the partner-kind
rule, per-partner rate limits, idempotency keys, strict input and cursor
pagination."""

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar, cast

from django.db.models import Field, Model, Q, QuerySet
from django.http import HttpResponse, HttpResponseBase
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from payments.api import idempotency
from payments.api.auth import RATE_KEY_TTL_SECONDS, AuthenticatedPartner, PartnerSignatureAuthentication, rate_key
from payments.api.problems import ApiError, ProblemCode
from payments.api.signed import SignedApiView
from payments.models import Partner, PartnerKind
from portal import fastcache
from portal.actors import Actor, client_ip
from portal.errors import DomainError

M = TypeVar("M", bound=Model)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class IsSignedPartner(BasePermission):
    def has_permission(self, request: Request, view) -> bool:
        return isinstance(request.user, AuthenticatedPartner)


def _rate_limit(partner: Partner, counted: int = 0) -> None:
    """At most `rate_limit_per_second` requests in each wall-clock second, shared by every web process.

    `counted`: the request's number in its second if authentication already counted it (in the
    round trip that records the nonce, payments/api/auth.py), else 0 and it is counted here."""
    count = counted or fastcache.count(rate_key(partner.pk, int(time.time())), timeout=RATE_KEY_TTL_SECONDS)
    if count > partner.rate_limit_per_second:
        raise ApiError(429, ProblemCode.RATE_LIMITED, "Too many requests.", headers={"Retry-After": "1"})


# NUL or a lone surrogate: valid JSON that PostgreSQL cannot store. One regex search (in C), not a
# Python loop over every character (which showed in every verify's profile).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def _members_once(pairs: list[tuple[str, object]]) -> dict:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("a member is named twice in one object")
    return members


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


class StrictJSONParser(JSONParser):
    """JSON in UTF-8 that PostgreSQL can store, or a 400: too deep nesting, NUL characters and lone
    surrogates (all valid JSON) would otherwise end in a 500 further on.

    UTF-8 whatever a `charset` parameter says (PARTNER_API.md "Conventions"; RFC 8259 defines no
    such parameter for JSON): DRF would decode with the declared codec, reading UTF-16 or UTF-7 as
    other text than the bytes that were signed, and failing outside JSON's errors with a codec such
    as `zlib` or `rot13`. A member named twice in one object is refused: readers disagree on which
    one counts (a proxy in front may act on the first, the portal on the last)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = json.loads(stream.read().decode(), object_pairs_hook=_members_once, parse_constant=_no_constant)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        except ValueError as exc:  # not UTF-8, not JSON, a member twice
            raise ParseError(f"JSON parse error - {exc}") from None
        pending = [data]
        while pending:  # iterative: the document may be deep
            value = pending.pop()
            if isinstance(value, dict):
                for key, item in value.items():
                    if not _storable(key):
                        raise ParseError("JSON parse error - NUL characters and lone surrogates are not accepted")
                    pending.append(item)
            elif isinstance(value, list):
                pending.extend(value)
            elif isinstance(value, str) and not _storable(value):
                raise ParseError("JSON parse error - NUL characters and lone surrogates are not accepted")
        return data


def _reject_nul(request: Request) -> None:
    """NUL cannot be stored or compared in PostgreSQL text: refuse it in the path and the query."""
    if "\x00" in request._request.path:
        raise ApiError(404, ProblemCode.NOT_FOUND, "Not found.")
    for name, values in request.query_params.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            raise ApiError(
                400,
                ProblemCode.VALIDATION_ERROR,
                "NUL characters are not accepted.",
                errors={name.replace("\x00", ""): ["NUL characters are not accepted."]},
            )


class PartnerApiView(SignedApiView):
    """Base of every signed partner endpoint.

    `idempotent = True` makes the view's POST require an `Idempotency-Key`
    (payments/api/idempotency.py): the key is read after authentication, rate
    limit and partner kind; the handler then runs in one transaction that first
    takes the key and ends by storing its response, and a completed request is
    replayed, signed afresh.
    """

    authentication_classes = [PartnerSignatureAuthentication]
    permission_classes = [IsSignedPartner]
    parser_classes = [StrictJSONParser]
    wallet_only = False  # linkages, QR tokens, family bindings and premiums
    idempotent = False  # POST requires an Idempotency-Key
    # The handler takes the key's claim as its `claim` argument and passes it to the statement that
    # carries it (payments/settlements/store.py); otherwise the claim runs alone before the handler.
    claim_carried = False

    _keyed: idempotency.KeyedRequest | None = None

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        partner = self.partner
        _rate_limit(partner, cast(AuthenticatedPartner, request.user).rate_count)  # see `partner`
        _reject_nul(request)
        if self.wallet_only and partner.kind != PartnerKind.WALLET:
            raise ApiError(403, ProblemCode.FORBIDDEN, "Only wallet partners may use this endpoint.")
        if self.idempotent and request.method == "POST" and hasattr(self, "post"):
            self._keyed = idempotency.keyed_request(partner=partner, request=request._request)

    def dispatch(self, request, *args, **kwargs) -> HttpResponseBase:
        # DRF's dispatch, except that an idempotent request runs under its key (`run_idempotent`).
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            self.initial(request, *args, **kwargs)
            if request.method.lower() in self.http_method_names:
                handler = getattr(self, request.method.lower(), self.http_method_not_allowed)
            else:
                handler = self.http_method_not_allowed
            if self._keyed is not None:
                return self._run_idempotent(self._keyed, handler, request, *args, **kwargs)
            response = handler(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

    def _run_idempotent(
        self, keyed: idempotency.KeyedRequest, handler, request: Request, *args, **kwargs
    ) -> HttpResponseBase:
        def run(claim: idempotency.Claim) -> HttpResponseBase:
            if self.claim_carried:
                response = handler(request, *args, claim=claim, **kwargs)
            else:
                claim.run_alone()
                response = handler(request, *args, **kwargs)
            return self.finalize_response(request, response, *args, **kwargs)

        def render(outcome: HttpResponseBase | Exception) -> HttpResponseBase:
            response = self.handle_exception(outcome) if isinstance(outcome, Exception) else outcome
            return self.finalize_response(request, response, *args, **kwargs)

        self.response = idempotency.run_idempotent(keyed, run, render=render)
        return self.response

    @property
    def partner(self) -> Partner:
        # Authenticated by PartnerSignatureAuthentication and checked by IsSignedPartner (`initial`).
        return cast(AuthenticatedPartner, self.request.user).partner


def json_response(request: Request, data: dict, status: int = 200) -> HttpResponse | Response:
    """`Response(data)` rendered as DRF's JSONRenderer would (compact, UTF-8, U+2028/9 escaped),
    without the renderer machinery; an `Accept` with parameters (`indent=`) still goes through DRF.
    For the counter's hot answers (mint, verify, create, confirm), whose data are plain JSON types."""
    if request.accepted_media_type != "application/json":
        return Response(data, status=status)
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return HttpResponse(
        text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode(),
        content_type="application/json",
        status=status,
    )


class StrictCharField(serializers.CharField):
    """A string, and only a string (DRF's CharField turns numbers into text)."""

    def to_internal_value(self, data) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# Control characters (C0, DEL, C1) and the bidirectional embeddings, overrides and isolates. In a
# partner's reference or reason, which the portal stores, shows on its screens and exports, they can
# only hide or reorder what a person reads there.
HIDDEN_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class ReferenceField(StrictCharField):
    """A partner's reference or reason: a string people read, so without control characters or
    bidirectional controls (a 400 `validation_error` naming the member)."""

    default_error_messages = {"hidden": _("Control characters and bidirectional controls are not accepted.")}

    def to_internal_value(self, data) -> str:
        value = super().to_internal_value(data)
        if HIDDEN_CHARACTERS.search(value):
            self.fail("hidden")
        return value


class StrictSerializer(serializers.Serializer):
    """A request serializer for which unknown fields are validation errors."""

    def validate(self, attrs: dict) -> dict:
        if isinstance(self.initial_data, dict):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        elif self.initial_data is not None:
            raise serializers.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
        return attrs


def parse_input(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    data = request.data
    if not isinstance(data, dict):
        raise ApiError(
            400,
            ProblemCode.VALIDATION_ERROR,
            "The body must be a JSON object.",
            errors={"non_field_errors": ["The body must be a JSON object."]},
        )
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- Cursor pagination ------------------------------------------------------


def _encode(parts: Sequence[str]) -> str:
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode().rstrip("=")


def _decode(cursor: str, size: int) -> list[str]:
    if not cursor or len(cursor) > 200 or not all(c.isalnum() or c in "-_" for c in cursor):
        raise ValueError
    try:
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("\x1f")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError from exc
    if len(parts) != size:
        raise ValueError
    return parts


def _bad(field: str, message: str) -> ApiError:
    return ApiError(400, ProblemCode.VALIDATION_ERROR, message, errors={field: [message]})


def page_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise _bad("limit", "limit is a whole number from 1 to 200.")
    return int(raw)


def paginate(
    request: Request,
    queryset: QuerySet[M],
    *,
    order: tuple[str, str] = ("created_at", "id"),
    serialize: Callable[[M], dict],
) -> dict:
    """`{"results": [...], "next_cursor": ...}` ordered by `order` ascending (a unique last field)."""
    limit = page_limit(request)
    cursor = request.query_params.get("cursor")
    first, second = order
    if cursor is not None:
        try:
            after_first, after_second = _decode(cursor, 2)
            meta = queryset.model._meta  # `order` names concrete fields
            after_first_value = cast(Field, meta.get_field(first)).to_python(after_first)
            after_second_value = cast(Field, meta.get_field(second)).to_python(after_second)
        except Exception:  # any undecodable or foreign cursor is the partner's error
            raise _bad("cursor", "The cursor is not valid.") from None
        queryset = queryset.filter(
            Q(**{f"{first}__gt": after_first_value})
            | Q(**{first: after_first_value, f"{second}__gt": after_second_value})
        )
    rows = list(queryset.order_by(first, second)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        value = getattr(last, first)
        value = value.isoformat() if hasattr(value, "isoformat") else str(value)
        next_cursor = _encode([value, str(getattr(last, second))])
    return {"results": [serialize(row) for row in rows], "next_cursor": next_cursor}


class ApiNotFoundView(SignedApiView):
    """Any path under /api/v1/ that names no endpoint: a signed 404 problem, whatever the method."""

    authentication_classes: list = []
    permission_classes: list = []
    schema = None

    def initial(self, request: Request, *args, **kwargs) -> None:
        raise ApiError(404, ProblemCode.NOT_FOUND, "There is no such endpoint.")


# --- Identity attempts ------------------------------------------------------

IDENTITY_MISMATCHES_PER_MINUTE = 10
IDENTITY_MISMATCH_WINDOW_SECONDS = 60


def _mismatch_key(partner: Partner) -> str:
    return f"identity-mismatches:{partner.pk}"


@contextmanager
def identity_checked(partner: Partner) -> Iterator[None]:
    """Around one identity check of the partner (`POST /linkages`, `/family-bindings`, `/premiums`):
    429 `rate_limited` before it once ten mismatches are counted, and a mismatch raised inside it
    (422 `identity_mismatch`, by the view or by a service) counted, or answered 429 instead if
    concurrent requests have used up the ten meanwhile."""
    _identity_attempts_check(partner)
    try:
        yield
    except (ApiError, DomainError) as exc:
        if (exc.problem_code if isinstance(exc, ApiError) else exc.code) == "identity_mismatch":
            _identity_mismatch_record(partner)
        raise


def partner_actor(request: Request, partner: Partner) -> Actor:
    return Actor.for_partner(partner.code, ip=client_ip(request._request))


def _identity_attempts_check(partner: Partner) -> None:
    """429 `rate_limited` once a partner has had ten identity mismatches in the last minute, on
    `POST /linkages`, `/family-bindings` and `/premiums` together (PARTNER_API.md "Identity
    mismatches").

    The minute slides: ten mismatches at 12:00:50..12:01:05 count as ten, and the partner is
    refused until the oldest that makes up the ten is a minute old (`Retry-After` says when).
    Every identity check of the partner is refused then, not only the wrong ones, so that
    the 429 itself tells nothing about the person tried. The times live in Redis (the
    Django cache), shared by every web process.
    """
    now = time.time()
    times = fastcache.window_times(_mismatch_key(partner), seconds=IDENTITY_MISMATCH_WINDOW_SECONDS, now=now)
    if len(times) >= IDENTITY_MISMATCHES_PER_MINUTE:
        raise _too_many_mismatches(times[len(times) - IDENTITY_MISMATCHES_PER_MINUTE], now)


def _identity_mismatch_record(partner: Partner) -> None:
    """Count a mismatch, or, if concurrent requests have used up the ten meanwhile, answer 429
    instead of the mismatch: the check and the count are one step in Redis."""
    now = time.time()
    blocking = fastcache.window_record_below(
        _mismatch_key(partner), seconds=IDENTITY_MISMATCH_WINDOW_SECONDS, limit=IDENTITY_MISMATCHES_PER_MINUTE, now=now
    )
    if blocking is not None:
        raise _too_many_mismatches(blocking, now)


def _too_many_mismatches(blocking: float, now: float) -> ApiError:
    free_at = blocking + IDENTITY_MISMATCH_WINDOW_SECONDS
    retry_after = min(IDENTITY_MISMATCH_WINDOW_SECONDS, max(1, math.ceil(free_at - now)))
    return ApiError(
        429,
        ProblemCode.RATE_LIMITED,
        "Too many identity mismatches: retry later.",
        headers={"Retry-After": str(retry_after)},
    )
