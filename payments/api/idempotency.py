"""`Idempotency-Key` for partner POSTs (PARTNER_API.md "Idempotency").

A view sets `idempotent = True`; `PartnerApiView` then takes the key with
`keyed_request` (no database) and makes one call, `run_idempotent`: in one
transaction, the key's claim, the handler, and `store` of its response. The
claim is one statement (`Claim.run_alone`), or carried by the settlement
statement it is passed to explicitly (payments/settlements/store.py): it
takes a transaction-level advisory lock on (partner, key) and reads the
stored record. A request that cannot have the lock is still running with that key
(409, not stored); the lock dies with the transaction, or with its session if
the process does. The response is stored by an INSERT in the same transaction,
so a business change and its stored response commit together, in one commit.

The read's snapshot is taken before the lock: a request with the same key may
commit between the two. The INSERT then finds its record (the unique
constraint on (partner, key)), the whole transaction is rolled back and the
request is answered from that record (`KeyTaken`, `stored_answer`): nothing is
done twice. A refusal of the handler (409, 422) is stored alone after its
rollback, likewise.

`in_progress` records were written by an earlier version of this module before
the handler ran; one left behind counts as absent and is overwritten.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone

from payments import rows
from payments.api.auth import request_target
from payments.api.problems import ApiError, ProblemCode
from payments.models import IdempotencyRecord, IdempotencyState, Partner
from portal import prepared

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Keys are kept at least this long (the contract says "at least 24 hours").
RETENTION = timedelta(hours=24)


@dataclass(frozen=True)
class KeyedRequest:
    """A request's key and what makes it "the same request"."""

    partner_id: int
    key: str
    method: str
    target: str
    body_sha256: str


class KeyTaken(Exception):
    """Another request with this key stored its response first: roll back, then answer with `stored_answer`."""


def request_key(request: HttpRequest) -> str:
    """The request's key, or 400 `idempotency_key_required` when it is missing or not 1 to 255 printable ASCII."""
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is None or not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        raise ApiError(
            400,
            ProblemCode.IDEMPOTENCY_KEY_REQUIRED,
            "This request requires an Idempotency-Key header of 1 to 255 printable ASCII characters.",
        )
    return key


def fingerprint(request: HttpRequest) -> tuple[str, str, str]:
    """Method, request target and SHA-256 of the body: what "the same request" means."""
    # `method` is None only on an HttpRequest built by hand, never on one a view receives.
    return cast(str, request.method).upper(), request_target(request), hashlib.sha256(request.body).hexdigest()


def keyed_request(*, partner: Partner, request: HttpRequest) -> KeyedRequest:
    """The key and fingerprint of `request` (400 `idempotency_key_required` without a valid key)."""
    key = request_key(request)
    return KeyedRequest(partner.pk, key, *fingerprint(request))


def _in_use() -> ApiError:
    return ApiError(
        409, ProblemCode.IDEMPOTENCY_KEY_IN_USE, "A request with this Idempotency-Key is still running; retry later."
    )


def _answer(
    keyed: KeyedRequest,
    method: str,
    target: str,
    body_sha256: str,
    status: int | None,
    body: bytes | memoryview | None,
    content_type: str | None,
) -> HttpResponse:
    """A completed record's response to replay, or 422 `idempotency_key_reused` if it was another request."""
    if (method, target, body_sha256) != (keyed.method, keyed.target, keyed.body_sha256):
        raise ApiError(
            422, ProblemCode.IDEMPOTENCY_KEY_REUSED, "This Idempotency-Key was already used with a different request."
        )
    response = HttpResponse(bytes(body or b""), status=status, content_type=content_type or "application/json")
    response[REPLAYED_HEADER] = "true"
    return response


# The advisory lock's key (the only 64-bit advisory lock of the project): the key hashed with the
# partner's id as seed, since keys are scoped to the partner.
LOCK_KEY_SQL = "hashtextextended(%s::text, %s::bigint)"


def _sql(template: str) -> str:
    return template.replace("<table>", f'"{IdempotencyRecord._meta.db_table}"').replace("<lock_key>", LOCK_KEY_SQL)


# The claim: the key's lock and its stored record, alone (`Claim.run_alone`) or as the CTE of a settlement
# statement that carries it (`Claim`). Its columns are named `claim_*`, apart from the statement's own.
CLAIM_SELECT = _sql(
    'SELECT pg_try_advisory_xact_lock(<lock_key>) AS "claim_locked", r."state" AS "claim_state",'
    ' r."method" AS "claim_method", r."target" AS "claim_target", r."body_sha256" AS "claim_body_sha256",'
    ' r."response_status" AS "claim_status", r."response_body" AS "claim_body",'
    ' r."response_content_type" AS "claim_content_type"'
    ' FROM (SELECT 1) one LEFT JOIN <table> r ON r."partner_id" = %s AND r."key" = %s'
)
# A carrying statement's CTE, and the condition its own work is gated on: true while the request may run.
CLAIM_CTE = f"claim AS ({CLAIM_SELECT})"
CLAIM_GO = f'(SELECT "claim_locked" AND "claim_state" IS DISTINCT FROM \'{IdempotencyState.COMPLETED}\' FROM claim)'  # noqa: S608
_STORED = ("claim_method", "claim_target", "claim_body_sha256", "claim_status", "claim_body", "claim_content_type")


class KeyAnswered(Exception):
    """The key answers for itself: 409 `idempotency_key_in_use`, 422 `idempotency_key_reused`
    (`error`), or the stored response to replay (`replay`). The transaction is rolled back and
    nothing is stored."""

    def __init__(self, *, replay: HttpResponse | None = None, error: ApiError | None = None) -> None:
        super().__init__(error.problem_code if error is not None else "replay")
        self.replay, self.error = replay, error


class Claim:
    """The key's claim, pending until a statement runs it: `run_alone` (a statement of its own), or
    a settlement statement of payments/settlements/store.py that carries it (`CLAIM_CTE`, gated on
    `CLAIM_GO`, with `carry()`'s parameters first) and hands its row to `settle`. Passed to the
    service explicitly by the API view; whatever the handler did, `run_idempotent` runs it alone if
    it is still pending, so that the key's own answer always comes first."""

    def __init__(self, keyed: KeyedRequest) -> None:
        self.keyed = keyed
        self.pending = True

    def carry(self) -> list:
        """The claim's parameters for a statement that carries it (it is no longer pending)."""
        self.pending = False
        keyed = self.keyed
        return [keyed.key, keyed.partner_id, keyed.partner_id, keyed.key]

    def run_alone(self) -> None:
        if self.pending:
            # One row whatever the key's state: `FROM (SELECT 1) LEFT JOIN` the record.
            self.settle(cast(dict, prepared.fetch_row(CLAIM_SELECT, self.carry())))

    def settle(self, row: dict) -> None:
        """Raise the key's own answer (KeyAnswered) found in `row`, if it has one: in use, or
        completed (a record left `in_progress` by an earlier version counts as absent)."""
        if not row["claim_locked"]:
            raise KeyAnswered(error=_in_use())
        if row["claim_state"] == IdempotencyState.COMPLETED:
            try:
                replay = _answer(self.keyed, *(row[name] for name in _STORED))
            except ApiError as exc:  # reused with another request
                raise KeyAnswered(error=exc) from None
            raise KeyAnswered(replay=replay)


def run_idempotent(
    keyed: KeyedRequest,
    handler: Callable[[Claim], HttpResponseBase],
    *,
    render: Callable[[HttpResponseBase | Exception], HttpResponseBase],
) -> HttpResponseBase:
    """Run `handler` under the key: in one transaction that owns the key (or answers with the key's
    own response), runs the handler and stores its rendered response, so that the business change
    and its stored response commit together. `handler` gets the pending claim: it may pass it to
    the statement that carries it, else it is run alone before the handler's answer is stored.
    `render` finalizes a response, or renders an exception, as the API does. A refusal of the
    handler (409, 422) is stored alone after its rollback; a key stored meanwhile by another
    request wins (`KeyTaken`)."""
    claim = Claim(keyed)
    try:
        with transaction.atomic():
            try:
                response = handler(claim)
            except KeyAnswered:
                raise
            except Exception:
                if claim.pending and not transaction.get_rollback():
                    claim.run_alone()  # refused before its claim ran: the key's own answer comes first
                raise
            claim.run_alone()
            if should_store(response) and not store(keyed, response):
                raise KeyTaken
    except KeyAnswered as answered:  # rolled back; nothing stored
        # KeyAnswered carries a replay or an error, never neither.
        return render(answered.replay if answered.replay is not None else cast(ApiError, answered.error))
    except KeyTaken:  # rolled back: the first request's answer stands
        return _stored_or_error(keyed, render)
    except Exception as exc:
        # Rolled back: nothing of the handler is left. Its refusal is stored alone; anything
        # unexpected is re-raised by `render`.
        response = render(exc)
        if should_store(response) and not store(keyed, response):
            response = _stored_or_error(keyed, render)
        return response
    return response


def _stored_or_error(
    keyed: KeyedRequest, render: Callable[[HttpResponseBase | Exception], HttpResponseBase]
) -> HttpResponseBase:
    try:
        return render(stored_answer(keyed))
    except ApiError as exc:
        return render(exc)


def should_store(response: HttpResponseBase) -> bool:
    """2xx, 409 and 422 are kept (the key's own answers never reach here: they are raised as KeyAnswered)."""
    return 200 <= response.status_code < 300 or response.status_code in (409, 422)


_STORE_SQL: str | None = None


def store(keyed: KeyedRequest, response: HttpResponseBase) -> bool:
    """Store the rendered response as the key's completed record: one INSERT, in the handler's
    transaction (or, for a refusal after its rollback, alone). False if the key already has a
    completed record."""
    return prepared.fetch_one(*store_statement(keyed, response)) is not None


def store_statement(keyed: KeyedRequest, response: HttpResponseBase) -> tuple[str, list]:
    """`store`'s INSERT and its parameters, RETURNING the id, or no row if the key already
    has a completed record. The parameters are the values the ORM would send for the record, built
    without a model instance (building one showed in every request's profile)."""
    global _STORE_SQL
    sql, fields = rows.insert_sql(IdempotencyRecord)
    if _STORE_SQL is None:  # `rows.insert`'s INSERT, overwriting only a record left `in_progress`
        updates = ", ".join(f'"{field.column}" = EXCLUDED."{field.column}"' for field in fields)
        _STORE_SQL = _sql(
            sql.removesuffix(f' RETURNING "{IdempotencyRecord._meta.pk.column}"')
            + f' ON CONFLICT ("partner_id", "key") DO UPDATE SET {updates} WHERE <table>."state" = %s RETURNING "id"'
        )
    values = _completed_record(keyed, response)
    return _STORE_SQL, [*(values[field.attname] for field in fields), str(IdempotencyState.IN_PROGRESS)]


def _completed_record(keyed: KeyedRequest, response: HttpResponseBase) -> dict:
    """The completed record of the key's response, by field attname."""
    now = timezone.now()
    return {
        "partner_id": keyed.partner_id,
        "key": keyed.key,
        "method": keyed.method,
        "target": keyed.target,
        "body_sha256": keyed.body_sha256,
        "state": str(IdempotencyState.COMPLETED),
        "response_status": response.status_code,
        "response_body": bytes(cast(HttpResponse, response).content),  # API responses are never streamed
        "response_content_type": (response.get("Content-Type") or "application/json")[:64],
        "created_at": now,
        "completed_at": now,
    }


def stored_answer(keyed: KeyedRequest) -> HttpResponse:
    """After `store` found the key taken (and the transaction was rolled back): the stored response to
    replay, or 422 `idempotency_key_reused`."""
    record = IdempotencyRecord.objects.filter(
        partner_id=keyed.partner_id, key=keyed.key, state=IdempotencyState.COMPLETED
    ).first()
    if record is None:  # purged meanwhile: cannot happen within the retention
        raise _in_use()
    return _answer(
        keyed,
        record.method,
        record.target,
        record.body_sha256,
        record.response_status,
        record.response_body,
        record.response_content_type,
    )


def idempotency_records_purge(*, older_than: timedelta = RETENTION) -> int:
    """Delete records older than the retention (beat runs it hourly); returns how many went."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
