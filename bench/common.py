"""What the benchmarks share: their own PostgreSQL database next to DATABASE_URL's."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from testkit.processes import gunicorn_process

# A benchmark server's environment that mounts the ceiling, `/api/v1/bench/ceiling` (bench/urls.py).
CEILING_ENVIRON = {"DJANGO_SETTINGS_MODULE": "bench.settings"}


def bench_database_url(suffix: str) -> tuple[str, str, str]:
    """(URL of the benchmark's database, URL of the server's `postgres` database, its name).
    Benchmarks run with the tests' settings (ECARD_MODE=test: derived keys on a throwaway database)."""
    os.environ.setdefault("ECARD_MODE", "test")
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL server (and REDIS_URL to a Redis db this may flush).")
    if not os.environ.get("REDIS_URL"):
        sys.exit("Set REDIS_URL (its db is flushed).")
    parts = urlsplit(url)
    name = parts.path.lstrip("/") + suffix
    admin = urlunsplit(parts._replace(path="/postgres"))
    return urlunsplit(parts._replace(path="/" + name)), admin, name


# The connections holding this process's claims on its databases (see `recreate_database`).
_CLAIMS: dict = {}


def recreate_database(admin_url: str, name: str) -> None:
    """Drop and create `name`, once this process holds the server's claim on it for its lifetime:
    a second benchmark on the same database would drop it under the first one's server (every
    request then fails) and flush its Redis db."""
    import psycopg

    if name not in _CLAIMS:
        claim = psycopg.connect(admin_url, autocommit=True)
        lock = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
        if not claim.execute(lock, [f"ecard-bench:{name}"]).fetchone()[0]:
            claim.close()
            sys.exit(
                f"Another benchmark is running on the database {name} (it drops and recreates it, and "
                "flushes REDIS_URL's db): wait for it to end, or give this one another DATABASE_URL."
            )
        _CLAIMS[name] = claim  # held until the process exits
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def fresh_django(suffix: str, **environ: str) -> tuple[str, str, str]:
    """Recreate the benchmark's own database, start Django on it (DEBUG off: the query log
    would distort the figures; `environ` sets more), migrate, and FLUSHDB REDIS_URL's db.
    Returns what `bench_database_url` does."""
    url, admin_url, name = bench_database_url(suffix)
    recreate_database(admin_url, name)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ["DEBUG"] = "0"
    os.environ.update(environ)
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    cache.clear()  # FLUSHDB: nonces, rate counters and broker keys from nothing
    return url, admin_url, name


def machine() -> dict:
    """The figures' machine: CPUs, memory, CPU model, Python, kernel."""
    import platform

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def reference_loop_ms(repeats: int = 5) -> float:
    """The machine's speed today: the best of `repeats` timings of one fixed pure-Python loop (ten
    million additions), in ms. The VM's speed differs from day to day (the same settlement costs
    more CPU on a slow day): figures taken on different days compare only next to this one."""
    import time

    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for value in range(10_000_000):
            total += value
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def start_gunicorn(db_url: str, port: int, workers: int, **environ: str) -> subprocess.Popen:
    """`gunicorn_process`, waiting until it answers."""
    process = gunicorn_process(db_url, port, workers, **environ)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/keys", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.3)
    process.terminate()
    sys.exit("gunicorn did not answer within 30 s")
