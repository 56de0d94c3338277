"""Reads that tolerate lag go to the replica (docs/operations.md, "Replica reads").

With `DATABASE_REPLICA_URL` set, settings add a `replica` database alias (a streaming standby of the
primary) and install `ReplicaRouter`. Nothing reads the replica unless a view opts in with
`@replica_reads` (dashboards, list screens, the audit log screen, catalogue lists) or an export
pins its rows there (`read_alias`, portal/exports.py). Everything else (writes, the partner API's
money and token paths, `/events`, Celery tasks, detail pages, every form) stays on the primary.

A decorated view reads the replica only when all of these hold, else the primary:

- the request is a GET or HEAD;
- the person did not make a non-safe request (POST, PUT, PATCH, DELETE) in the last
  `ECARD_READ_YOUR_WRITES_SECONDS` (`ReadYourWritesMiddleware` marks it in Redis, keyed by the user's
  id: every browser and device of that person sees their own writes, and the mark expires by
  itself; a session key would cover one browser only and cost a session write);
- the replica answers and lags at most `ECARD_REPLICA_MAX_LAG_SECONDS` behind (measured at most once
  a second per process, `replica_lag`);
- no transaction is open on the primary (a read inside `atomic()` belongs to that transaction).

A replica that fails during the view (it went down after the measurement) makes the view run once
more on the primary: the decorated views are reads.

The router learns the request's decision from a ContextVar. CONVENTIONS.md keeps ContextVars out
of the fast paths' stores, where they would hide arguments; a request-scoped routing decision that
Django's router API gives no argument for is what they are for (Django keeps its connections in
asgiref's Local, the same mechanism). It is set only inside the decorated view and reset in a
`finally`, so nothing after the view (middleware, a streamed body, the next request on the thread,
a Celery task) inherits it.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

REPLICA = "replica"
SAFE_METHODS = ("GET", "HEAD")

# How long one lag measurement serves a process's requests, and how often each warning repeats.
MEASURE_EVERY_SECONDS = 1.0
WARN_EVERY_SECONDS = 60.0

# Seconds the replica is behind: 0 when it has replayed all it received, else the age of the last
# transaction it replayed. NULL on a server that is not a standby.
LAG_SQL = (
    "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END"
)

_reads_on_replica: ContextVar[bool] = ContextVar("ecard_reads_on_replica", default=False)


class ReplicaRouter:
    """Reads go to the replica only inside a decision to use it; writes and migrations never do."""

    def db_for_read(self, model: type, **hints: Any) -> str:
        if _reads_on_replica.get() and not connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return REPLICA
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model: type, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # The same rows on both: an object read on the replica may be linked to one on the primary.
        if {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, REPLICA}:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db == REPLICA else None


def replica_configured() -> bool:
    return REPLICA in connections.settings


# --- Read your writes -------------------------------------------------------------------------


def _window_key(user_id: int) -> str:
    return f"replica:primary-until:{user_id}"


def mark_wrote(user_id: int) -> None:
    """The person's tolerant reads go to the primary for the next ECARD_READ_YOUR_WRITES_SECONDS."""
    try:
        cache.set(_window_key(user_id), 1, timeout=settings.ECARD_READ_YOUR_WRITES_SECONDS)
    except RedisError:
        _warn("redis", "Redis is unreachable: a write could not be remembered for read-your-writes")


def in_write_window(user_id: int) -> bool:
    try:
        return cache.get(_window_key(user_id)) is not None
    except RedisError:
        return True  # cannot tell: the primary is always right


class ReadYourWritesMiddleware:
    """After a signed-in person's non-safe request, marks their read-your-writes window (whatever
    the response: a form that failed may still have written, and the cost is a few primary reads)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE") and replica_configured():
            user = getattr(request, "user", None)  # read after the view: a sign-in sets it
            if user is not None and user.is_authenticated:
                mark_wrote(user.pk)
        return response


# --- Health -----------------------------------------------------------------------------------

_measured: tuple[float, float | None] | None = None  # (monotonic time, lag or None when unreadable)
_measuring = threading.Lock()
_warned_at: dict[str, float] = {}


def _warn(kind: str, message: str) -> None:
    """One WARNING per kind and WARN_EVERY_SECONDS in a process; never personal data."""
    now = time.monotonic()
    last = _warned_at.get(kind)
    if last is None or now - last >= WARN_EVERY_SECONDS:
        _warned_at[kind] = now
        logger.warning(message)


def _measure() -> float | None:
    connection = connections[REPLICA]
    try:
        with connection.cursor() as cursor:
            cursor.execute(LAG_SQL)
            row = cursor.fetchone()
    except DatabaseError as exc:
        with contextlib.suppress(DatabaseError):
            connection.close()
        _warn("down", f"The replica cannot be read ({type(exc).__name__}): reads stay on the primary")
        return None
    if row is None or row[0] is None:
        _warn(
            "not-standby",
            "The replica's lag is unknown (no replayed transaction yet, or not a standby): reads stay on the primary",
        )
        return None
    return float(row[0])


def replica_lag() -> float | None:
    """Seconds the replica is behind the primary, None when it cannot be read (or while another
    thread of the process takes the first measurement)."""
    global _measured
    measured = _measured
    if measured is not None and time.monotonic() - measured[0] < MEASURE_EVERY_SECONDS:
        return measured[1]
    if not _measuring.acquire(blocking=False):
        return measured[1] if measured is not None else None
    try:
        lag = _measure()
        _measured = (time.monotonic(), lag)
        return lag
    finally:
        _measuring.release()


def forget_measurement(*, warnings: bool = False) -> None:
    """The next request measures the replica afresh (after a failure, and in tests, which also
    forget the warnings given)."""
    global _measured
    _measured = None
    if warnings:
        _warned_at.clear()


# --- The decision -----------------------------------------------------------------------------


def read_alias(request: HttpRequest) -> str:
    """Where this request's lag-tolerant reads go: REPLICA, or the primary's alias when there is no
    replica, the person is in their read-your-writes window, or the replica is down or lagging."""
    if not replica_configured():
        return DEFAULT_DB_ALIAS
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and in_write_window(user.pk):
        return DEFAULT_DB_ALIAS
    lag = replica_lag()
    if lag is None:
        return DEFAULT_DB_ALIAS
    if lag > settings.ECARD_REPLICA_MAX_LAG_SECONDS:
        _warn(
            "lagging",
            f"The replica lags {lag:.1f} s (bound {settings.ECARD_REPLICA_MAX_LAG_SECONDS} s): reads stay on the primary",
        )
        return DEFAULT_DB_ALIAS
    return REPLICA


@contextlib.contextmanager
def reads_on_replica() -> Iterator[None]:
    token = _reads_on_replica.set(True)
    try:
        yield
    finally:
        _reads_on_replica.reset(token)


def replica_reads(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The view's reads may come from the replica (a GET or HEAD, see the module's docstring).
    Put it below the permission decorators, so that who may see the page is read on the primary."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in SAFE_METHODS or read_alias(request) != REPLICA:
            return view(request, *args, **kwargs)
        try:
            with reads_on_replica():
                return view(request, *args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            # The replica went away after it was measured (or the primary failed: then the same
            # error comes again below). The view is a read: run it again on the primary.
            with contextlib.suppress(DatabaseError):
                connections[REPLICA].close()
            forget_measurement()
            _warn("failed", f"A read on the replica failed ({type(exc).__name__}): the page is read from the primary")
            return view(request, *args, **kwargs)

    return wrapper
