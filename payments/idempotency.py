"""`Idempotency-Key` for partner POSTs (PARTNER_API.md "Idempotency").

A view sets `idempotent = True`; `PartnerApiView` then takes the key with
`keyed_request` (no database) and runs, in the handler's own transaction,
`begin` before the handler (or, with `claim_carried`, the same claim carried by
the handler's first statement: `claimed`) and `store` after it. `begin` is one statement: it
takes a transaction-level advisory lock on (partner, key) and reads the stored
record. A request that cannot have the lock is still running with that key
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone

from payments import rows
from payments.api.auth import request_target
from payments.api.problems import ApiError
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
            "idempotency_key_required",
            "This request requires an Idempotency-Key header of 1 to 255 printable ASCII characters.",
        )
    return key


def fingerprint(request: HttpRequest) -> tuple[str, str, str]:
    """Method, request target and SHA-256 of the body: what "the same request" means."""
    return request.method.upper(), request_target(request), hashlib.sha256(request.body).hexdigest()


def keyed_request(*, partner: Partner, request: HttpRequest) -> KeyedRequest:
    """The key and fingerprint of `request` (400 `idempotency_key_required` without a valid key)."""
    key = request_key(request)
    return KeyedRequest(partner.pk, key, *fingerprint(request))


def _in_use() -> ApiError:
    return ApiError(409, "idempotency_key_in_use", "A request with this Idempotency-Key is still running; retry later.")


def _answer(
    keyed: KeyedRequest,
    method: str,
    target: str,
    body_sha256: str,
    status: int,
    body: bytes | memoryview | None,
    content_type: str | None,
) -> HttpResponse:
    """A completed record's response to replay, or 422 `idempotency_key_reused` if it was another request."""
    if (method, target, body_sha256) != (keyed.method, keyed.target, keyed.body_sha256):
        raise ApiError(422, "idempotency_key_reused", "This Idempotency-Key was already used with a different request.")
    response = HttpResponse(bytes(body or b""), status=status, content_type=content_type or "application/json")
    response[REPLAYED_HEADER] = "true"
    return response


# The advisory lock's key (the only 64-bit advisory lock of the project): the key hashed with the
# partner's id as seed, since keys are scoped to the partner.
LOCK_KEY_SQL = "hashtextextended(%s::text, %s::bigint)"


def _sql(template: str) -> str:
    return template.replace("<table>", f'"{IdempotencyRecord._meta.db_table}"').replace("<lock_key>", LOCK_KEY_SQL)


# The claim: the key's lock and its stored record (`_claim_params`), alone (`begin`) or as the CTE of a
# statement that carries it (`carrying_sql`).
_BEGIN_SQL = _sql(
    'SELECT pg_try_advisory_xact_lock(<lock_key>) AS "locked", r."state", r."method", r."target",'
    ' r."body_sha256", r."response_status", r."response_body", r."response_content_type"'
    ' FROM (SELECT 1) one LEFT JOIN <table> r ON r."partner_id" = %s AND r."key" = %s'
)


class KeyAnswered(Exception):
    """The key answers for itself, found by a claim carried by the handler's first statement or run
    when the handler ends without one: 409 `idempotency_key_in_use`, 422 `idempotency_key_reused`
    (`error`), or the stored response to replay (`replay`). The transaction is rolled back and
    nothing is stored, as when `begin` answers before the handler."""

    def __init__(self, *, replay: HttpResponse | None = None, error: ApiError | None = None) -> None:
        super().__init__(error.problem_code if error is not None else "replay")
        self.replay, self.error = replay, error


def begin(keyed: KeyedRequest) -> None:
    """Own the key until the end of the current transaction (call first in the handler's transaction),
    or raise its own answer (KeyAnswered)."""
    locked, state, *stored = prepared.fetch_one(_BEGIN_SQL, _claim_params(keyed))
    _settle(keyed, locked, state, stored)


# --- The claim carried by the handler's first statement ----------------------------------------
#
# `begin` is a round trip of its own. A handler whose first statement can carry it (settlement
# create and confirm, the partner API's hottest writes) runs its first statement through
# `fetch_one_carrying`, built by `carrying_sql`: the claim's CTE is evaluated first, and the statement's
# own work (its row locks, a token consumed) is gated on `<claim_go>`, so that a key in use or
# already answered touches nothing, as if `begin` had answered first. The claim not taken before
# the connection's next statement is run alone just before it (an execute wrapper), or when the
# handler ends if it ran none (e.g. it refused the body first): the key's answer then replaces
# the handler's, exactly as `begin` before the handler would have given it.

GO = "<claim_go>"  # in a carrying statement's SQL: true while the request may run
_CLAIM_CTE = f"claim AS ({_BEGIN_SQL})"
_CLAIM_GO = f'(SELECT "locked" AND "state" IS DISTINCT FROM \'{IdempotencyState.COMPLETED}\' FROM claim)'  # noqa: S608
CLAIM_WIDTH = 8  # the claim's columns before the statement's own


def carrying_sql(ctes: str, select: str, carried: bool) -> str:
    """`WITH <ctes> <select>` (`ctes` may be empty), whose work is gated on `GO`: as it is (GO true)
    or carrying the claim: then its one row is the claim's CLAIM_WIDTH columns followed by
    `select`'s, all NULL when `select` found nothing or did not run; the claim's parameters
    (`_claim_params`) come first."""
    if not carried:
        return (f"WITH {ctes} {select}" if ctes else select).replace(GO, "true")
    sql = f"WITH {_CLAIM_CTE}{', ' + ctes if ctes else ''} SELECT claim.*, q.* FROM claim LEFT JOIN LATERAL ({select}) q ON true"  # noqa: S608, E501 (our SQL)
    return sql.replace(GO, _CLAIM_GO)


def fetch_one_carrying(sql_for: Callable[[bool], str], params: list) -> tuple | None:
    """`prepared.fetch_one(sql_for(False), params)`; or, while a claim is pending on the connection
    (`claimed`), the same statement carrying it (`sql_for(True)`, built by `carrying_sql`): the
    key's own answer is raised (KeyAnswered), else the statement's own row (None if none)."""
    keyed = _take_claim()
    if keyed is None:
        return prepared.fetch_one(sql_for(False), params)
    found = prepared.fetch_one(sql_for(True), [*_claim_params(keyed), *params])
    locked, state, *stored = found[:CLAIM_WIDTH]
    _settle(keyed, locked, state, stored)
    own = found[CLAIM_WIDTH:]
    return None if all(value is None for value in own) else tuple(own)


def _claim_params(keyed: KeyedRequest) -> list:
    return [keyed.key, keyed.partner_id, keyed.partner_id, keyed.key]


def _settle(keyed: KeyedRequest, locked: bool, state: str | None, stored: list) -> None:
    """Raise the key's own answer (KeyAnswered), if it has one: in use, or completed (a record left
    `in_progress` by the earlier version counts as absent)."""
    if not locked:
        raise KeyAnswered(error=_in_use())
    if state == IdempotencyState.COMPLETED:
        try:
            replay = _answer(keyed, *stored)
        except ApiError as exc:  # reused with another request
            raise KeyAnswered(error=exc) from None
        raise KeyAnswered(replay=replay)


class _Claim:
    def __init__(self, keyed: KeyedRequest) -> None:
        self.keyed: KeyedRequest | None = keyed

    def take(self) -> KeyedRequest | None:
        keyed, self.keyed = self.keyed, None
        return keyed

    def run(self) -> None:
        """The claim alone, if still pending (`begin`)."""
        keyed = self.take()
        if keyed is not None:
            begin(keyed)

    def _before_statement(self, execute, sql, params, many, context):
        self.run()
        return execute(sql, params, many, context)


@contextmanager
def claimed(keyed: KeyedRequest, *, carried: bool) -> Iterator[None]:
    """Own the key for the handler run within (inside its transaction): at once (`begin`), or
    `carried` by the handler's first statement. The key's own answer is raised as KeyAnswered."""
    if not carried:
        begin(keyed)
        yield
        return
    db = connections[DEFAULT_DB_ALIAS]
    if getattr(db, "_ecard_claim", None) is not None:
        raise RuntimeError("claimed() does not nest")
    claim = db._ecard_claim = _Claim(keyed)
    try:
        with db.execute_wrapper(claim._before_statement):
            try:
                yield
            except KeyAnswered:
                raise
            except Exception:
                if claim.keyed is not None:
                    # The handler refused before any statement: the key's answer comes first. Its
                    # service's atomic block marked the transaction for rollback on the way out, but
                    # nothing ran in it; the mark is put back, and the refusal still rolls it back.
                    marked = transaction.get_rollback()
                    transaction.set_rollback(False)
                    try:
                        claim.run()
                    finally:
                        transaction.set_rollback(marked)
                raise
            claim.run()
    finally:
        db._ecard_claim = None


def _take_claim() -> KeyedRequest | None:
    """The pending claim, for the caller's next statement to carry, or None: no claim is pending."""
    claim = getattr(connections[DEFAULT_DB_ALIAS], "_ecard_claim", None)
    return None if claim is None else claim.take()


def should_store(response: HttpResponseBase) -> bool:
    """2xx, 409 and 422 are kept (the key's own answers never reach here: they are raised as KeyAnswered)."""
    return 200 <= response.status_code < 300 or response.status_code in (409, 422)


_STORE_SQL: str | None = None


def store(keyed: KeyedRequest, response: HttpResponseBase, joined: prepared.JoinedWrites | None = None) -> bool:
    """Store the rendered response as the key's completed record: one INSERT, in the handler's transaction
    (or, for a refusal after its rollback, alone), joined into the handler's last write if `joined`
    holds one back. False if the key already has a completed record."""
    if joined is not None:
        return joined.flush([store_statement(keyed, response)])[0] is not None
    return prepared.fetch_one(*store_statement(keyed, response)) is not None


def store_statement(keyed: KeyedRequest, response: HttpResponseBase) -> tuple[str, list]:
    """`store`'s INSERT and its parameters, RETURNING the id, or no row if the key already
    has a completed record. The parameters are the values the ORM would send for the record, built
    without a model instance (about a twentieth of a request's CPU with one)."""
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
        "response_body": bytes(response.content),
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
