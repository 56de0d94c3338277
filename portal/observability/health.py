"""/readyz: can this web process serve? Each dependency is checked for real, once per call.

`database` (SELECT 1 on the primary), `redis` (PING), `broker` (a Celery broker connection),
`migrations` (none unapplied; once true it is remembered for the life of the process, since
migrations are applied before a release's processes start) and `replica` (only where a
`replica` database is configured: its replay lag within ECARD_REPLICA_MAX_LAG_SECONDS).
A failing check answers 503 naming it, with the exception's class only: never a message, which
could carry a host or a DSN. /healthz stays the liveness answer: the process is up, nothing more.
"""

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

from portal import redisconn, replica
from portal.observability import metrics

logger = logging.getLogger(__name__)

# Seconds a check may take before it counts as failing.
CHECK_TIMEOUT_SECONDS = 3

_migrations_applied = False


class CheckFailed(Exception):
    """A dependency answered, but not well enough (pending migrations, replica too far behind)."""


def check_database() -> str:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def check_redis() -> str:
    client = redisconn.client(
        settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def check_broker() -> str:
    from portal.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT_SECONDS)
    return "ok"


def check_migrations() -> str:
    global _migrations_applied
    if not _migrations_applied:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            raise CheckFailed(f"{len(pending)} migrations not applied")
        _migrations_applied = True
    return "ok"


def check_replica() -> str:
    """The router's own measurement (portal.replica): what the screens' reads see."""
    if not replica.replica_configured():
        return "skipped"
    lag = replica.replica_lag()
    if lag is None:
        raise CheckFailed("replica unreadable")
    if lag > settings.ECARD_REPLICA_MAX_LAG_SECONDS:
        raise CheckFailed(f"replica {lag:.0f} s behind")
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
    "migrations": check_migrations,
    "replica": check_replica,
}
# Which error counter a failing check adds to.
_ERROR_KIND = {
    "database": "database",
    "migrations": "database",
    "replica": "database",
    "redis": "redis",
    "broker": "redis",
}


def run_checks() -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    ok = True
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            results[name] = check()
        except CheckFailed as exc:
            ok = False
            results[name] = f"failing: {exc}"
        except Exception as exc:
            ok = False
            results[name] = f"failing: {type(exc).__name__}"
            metrics.count_error(_ERROR_KIND[name])
        elapsed = time.monotonic() - started
        if not results[name].startswith(("ok", "skipped")):
            logger.warning("readiness check %s %s after %.1f s", name, results[name], elapsed)
    return ok, results


def readyz(request: HttpRequest) -> JsonResponse:
    ok, results = run_checks()
    body: dict = {"status": "ok" if ok else "failing", "checks": results}
    if not ok:
        body["failing"] = [name for name, result in results.items() if result.startswith("failing")]
    response = JsonResponse(body, status=200 if ok else 503)
    response["Cache-Control"] = "no-store"
    return response
