"""A database or Redis that is briefly unreachable answers 503 with `Retry-After`, not 500.

A Patroni failover of the database leader, a Redis restart or a Sentinel failover refuses requests
for a few seconds: connections are cut or refused, and a node that is no longer the leader refuses
writes. Such a request is answered 503 with `Retry-After`, so that a partner retries (with the same
`Idempotency-Key`: a 5xx is never stored for it) and a clerk tries again.

`unreachable_backend` says which exceptions these are. The partner API's exception handler
(payments/api/problems.py) answers them problem+json; the screens get the 503 page from
`server_error`, the URL conf's `handler500`, which sees what fails in middleware too (a session
read) and not only in views. Each such answer logs one warning line naming the exception's class,
never its message, which may carry personal data.
"""

import logging
import sys

from django.db import InterfaceError, InternalError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template import loader
from django.views import defaults

logger = logging.getLogger(__name__)

# A failover takes seconds: a partner that retries after one second, backing off as it goes, gets
# through soon after the new leader takes over.
RETRY_AFTER_SECONDS = 1

# PostgreSQL's read_only_sql_transaction: a write on a node that is no longer the leader.
_READ_ONLY_SQLSTATE = "25006"


def _read_only(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == _READ_ONLY_SQLSTATE


def _replies_lost(exc: BaseException) -> bool:
    """psycopg lost track of the connection's replies ("received 2 results from command 'BEGIN'"):
    what PgBouncer's client connection shows when its server connection dies in a failover. Raised
    by psycopg itself, so without a SQLSTATE; an InternalError of the server always has one."""
    import psycopg

    cause = exc.__cause__
    return isinstance(cause, psycopg.InternalError) and cause.sqlstate is None


def _connection_spoiled(exc: BaseException) -> bool:
    """A connection that still answers but must not serve the next request: read-only (no longer
    the leader) or out of step with its replies."""
    return isinstance(exc, InternalError) and (_read_only(exc) or _replies_lost(exc))


def unreachable_backend(exc: BaseException) -> str | None:
    """ "database" or "redis" if `exc` says that one cannot be reached for now (connection lost,
    refused, timed out, terminated, read-only after a failover, or out of step with its replies),
    else None: any other error,
    a bad query among them, stays a 500."""
    import kombu.exceptions
    import redis.exceptions

    if isinstance(exc, OperationalError | InterfaceError) or _connection_spoiled(exc):
        return "database"
    if isinstance(
        exc,
        redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | redis.exceptions.ReadOnlyError
        | kombu.exceptions.OperationalError,
    ):
        return "redis"
    return None


def answered_unavailable(exc: BaseException, backend: str, response: HttpResponseBase) -> HttpResponseBase:
    """Log the one warning line of a 503 answered for `exc`, and set its `Retry-After`.

    Django's own line for the response (an error, with the traceback and so the message) is left
    out. A connection refused as read-only is closed at once: it still answers, so Django would keep
    it for the next request, which would be refused the same way for as long as CONN_MAX_AGE (and
    one out of step with its replies, which could answer the next request with this one's)."""
    cause = exc.__cause__
    logger.warning(
        "%s unreachable (%s%s): answered 503",
        backend,
        type(exc).__name__,
        f" from {type(cause).__module__}.{type(cause).__qualname__}" if cause is not None else "",
    )
    if _connection_spoiled(exc):
        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:
                connection.close()
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response._has_been_logged = True  # type: ignore[attr-defined]  # read by django.utils.log.log_response
    return response


def server_error(request: HttpRequest) -> HttpResponseBase:
    """`handler500`: the 503 page (templates/503.html) for a database or Redis that cannot be reached,
    else Django's 500 page. Rendered without the request, as Django's is: no context processor, no
    query. The error was counted by the metrics' `got_request_exception` receiver already."""
    exc = sys.exc_info()[1]
    backend = unreachable_backend(exc) if exc is not None else None
    if exc is None or backend is None:
        return defaults.server_error(request)
    response = HttpResponse(loader.get_template("503.html").render(), status=503)
    return answered_unavailable(exc, backend, response)
