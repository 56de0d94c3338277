"""What the benchmarks share: their own PostgreSQL database next to DATABASE_URL's."""

import os
import sys
from urllib.parse import urlsplit, urlunsplit


def bench_database_url(suffix: str) -> tuple[str, str, str]:
    """(URL of the benchmark's database, URL of the server's `postgres` database, its name)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL server (and REDIS_URL to a Redis db this may flush).")
    if not os.environ.get("REDIS_URL"):
        sys.exit("Set REDIS_URL (its db is flushed).")
    parts = urlsplit(url)
    name = parts.path.lstrip("/") + suffix
    admin = urlunsplit(parts._replace(path="/postgres"))
    return urlunsplit(parts._replace(path="/" + name)), admin, name


def recreate_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
