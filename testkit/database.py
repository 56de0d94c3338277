"""Other sessions on the test database, as another web process has, and waiting on their locks."""

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
from django.db import connection


@contextmanager
def other_connection():
    """A connection of its own to the test database, as another web process has (autocommit)."""
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        autocommit=True,
    ) as conn:
        yield conn


def waits_on(holder) -> bool:
    """Whether another backend waits on a lock that `holder` (a connection) has, within 10 s."""
    (holder_pid,) = holder.execute("SELECT pg_backend_pid()").fetchone()
    with other_connection() as watcher:
        for _ in range(200):
            if watcher.execute(
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid)))", [holder_pid]
            ).fetchone()[0]:
                return True
            threading.Event().wait(0.05)
    return False


def sent_while_held(first, send):
    """`send()` while `first` (a connection in a transaction) holds a row the request will lock;
    `first` commits as soon as the request waits on it. The request's answer."""

    def commit_once_the_request_waits():
        waits_on(first)
        first.execute("COMMIT")

    with ThreadPoolExecutor(max_workers=1) as pool:
        committer = pool.submit(commit_once_the_request_waits)
        response = send()
        committer.result(timeout=30)
    return response


# The key's lock, as PartnerApiView takes it (a transaction-level advisory lock): the key hashed with
# the partner's id as seed.
LOCK_KEY = "hashtextextended(%s::text, %s::bigint)"


def terminate_backend(db=connection) -> None:
    """End the backend of this process's Django connection `db` from another session, as a failover
    or a restart of PostgreSQL does: its next query fails. Waits (up to 5 s) until it has gone."""
    db.ensure_connection()
    pid = db.connection.info.backend_pid
    with other_connection() as other:
        assert other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0]


def terminate_other_backends() -> int:
    """End every other session on the test database (another process's, such as a gunicorn worker's),
    leaving this process's Django connection; how many were ended."""
    connection.ensure_connection()
    own = connection.connection.info.backend_pid
    with other_connection() as other:
        rows = other.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid NOT IN (%s, pg_backend_pid())",
            [own],
        ).fetchall()
    return len(rows)
