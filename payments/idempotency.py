"""`Idempotency-Key` for partner POSTs (PARTNER_API.md "Idempotency").

A view sets `idempotent = True`; `PartnerApiView` then calls `claim` before the
handler and `complete` or `release` after it. The first request with a key
inserts an `in_progress` record in its own committed transaction (one
autocommit INSERT), so that the
unique constraint on (partner, key) decides a race between concurrent
requests; the stored response is written in the handler's transaction, so a
completed business change and its stored response commit together.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone

from payments import rows
from payments.api_auth import request_target
from payments.models import IdempotencyRecord, IdempotencyState, Partner
from payments.problems import ApiError
from portal import prepared

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# An `in_progress` record older than this was left by a process that died: the next request takes it over.
STALE_AFTER = timedelta(seconds=60)
# Keys are kept at least this long (the contract says "at least 24 hours").
RETENTION = timedelta(hours=24)


@dataclass(frozen=True)
class Claim:
    """An `in_progress` record this request owns; `lease` is its `created_at` when claimed."""

    record_id: int
    lease: datetime


def request_key(request: HttpRequest) -> str:
    """The request's key, or 400 `idempotency_key_required` when it is missing or not 1 to 255 printable ASCII."""
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is None or not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        raise ApiError(400, "idempotency_key_required",
                       "This request requires an Idempotency-Key header of 1 to 255 printable ASCII characters.")
    return key


def fingerprint(request: HttpRequest) -> tuple[str, str, str]:
    """Method, request target and SHA-256 of the body: what "the same request" means."""
    return request.method.upper(), request_target(request), hashlib.sha256(request.body).hexdigest()


def _replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(bytes(record.response_body or b""), status=record.response_status,
                            content_type=record.response_content_type or "application/json")
    response[REPLAYED_HEADER] = "true"
    return response


def claim(*, partner: Partner, request: HttpRequest) -> Claim | HttpResponse:
    """Own the key for this request, or answer without running it.

    Returns a `Claim` (run the handler), or the stored response to replay;
    raises 409 `idempotency_key_in_use` or 422 `idempotency_key_reused`.
    """
    key = request_key(request)
    method, target, body_sha256 = fingerprint(request)
    for _ in range(5):
        now = timezone.now()
        record = IdempotencyRecord(partner=partner, key=key, method=method, target=target, body_sha256=body_sha256,
                                   state=IdempotencyState.IN_PROGRESS)
        try:
            if connection.in_atomic_block:  # (tests) a savepoint keeps the caller's transaction usable
                with transaction.atomic():
                    rows.insert(record)
            else:  # autocommit: the INSERT is its own committed transaction, one statement
                rows.insert(record)
            return Claim(record.pk, record.created_at)
        except IntegrityError:
            pass
        record = IdempotencyRecord.objects.filter(partner=partner, key=key).first()
        if record is None:  # released between our insert and this read: try again
            continue
        if (record.method, record.target, record.body_sha256) != (method, target, body_sha256):
            raise ApiError(422, "idempotency_key_reused",
                           "This Idempotency-Key was already used with a different request.")
        if record.state == IdempotencyState.COMPLETED:
            return _replay(record)
        if record.created_at > now - STALE_AFTER:
            raise ApiError(409, "idempotency_key_in_use",
                           "A request with this Idempotency-Key is still running; retry later.")
        # Left by a process that died: take it over with a conditional update (one taker wins).
        taken = IdempotencyRecord.objects.filter(
            pk=record.pk, state=IdempotencyState.IN_PROGRESS, created_at=record.created_at
        ).update(created_at=now)
        if taken:
            return Claim(record.pk, now)
    raise ApiError(409, "idempotency_key_in_use", "A request with this Idempotency-Key is still running; retry later.")


def should_store(response: HttpResponseBase) -> bool:
    """2xx, 409 and 422 are kept (the in-use answer never reaches here: it is raised before a claim)."""
    return 200 <= response.status_code < 300 or response.status_code in (409, 422)


_COMPLETE_SQL: str | None = None


def complete(claim: Claim, response: HttpResponseBase) -> None:
    """Store the rendered response (call inside the handler's transaction)."""
    global _COMPLETE_SQL
    if not prepared.postgresql():  # the SQLite demo: the ORM adapts the lease as it stored it
        IdempotencyRecord.objects.filter(
            pk=claim.record_id, state=IdempotencyState.IN_PROGRESS, created_at=claim.lease
        ).update(state=IdempotencyState.COMPLETED, response_status=response.status_code,
                 response_body=bytes(response.content),
                 response_content_type=(response.get("Content-Type") or "application/json")[:64],
                 completed_at=timezone.now())
        return
    if _COMPLETE_SQL is None:  # as the ORM's conditional UPDATE, prepared once per connection
        _COMPLETE_SQL = (
            f'UPDATE "{IdempotencyRecord._meta.db_table}" SET "state" = %s, "response_status" = %s,'
            ' "response_body" = %s, "response_content_type" = %s, "completed_at" = %s'
            ' WHERE "id" = %s AND "state" = %s AND "created_at" = %s RETURNING "id"'
        )
    prepared.fetch_one(_COMPLETE_SQL, [
        str(IdempotencyState.COMPLETED), response.status_code, bytes(response.content),
        (response.get("Content-Type") or "application/json")[:64], timezone.now(),
        claim.record_id, str(IdempotencyState.IN_PROGRESS), claim.lease,
    ])


def release(claim: Claim) -> None:
    """Forget the key (400, 401, 403, 404, 429, 5xx...), so that the partner may retry with it."""
    IdempotencyRecord.objects.filter(
        pk=claim.record_id, state=IdempotencyState.IN_PROGRESS, created_at=claim.lease
    ).delete()


def idempotency_records_purge(*, older_than: timedelta = RETENTION) -> int:
    """Delete records older than the retention (beat runs it hourly); returns how many went."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
