"""Two benchmarks on one database: the second stops with a message instead of dropping the
database under the first one's server (which happened once: every request of the first run failed)."""

import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

from bench.common import bench_database_url

ROOT = Path(__file__).resolve().parents[2]
# A benchmark process, cut down to its claim: recreate the database, say so, then wait for stdin to close.
BENCH = (
    "import sys; from bench.common import recreate_database; recreate_database(sys.argv[1], sys.argv[2]); "
    "print('recreated', flush=True); sys.stdin.read()"
)


def _bench(admin_url: str, name: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", BENCH, admin_url, name],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def _exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute("SELECT EXISTS (SELECT FROM pg_database WHERE datname = %s)", [name]).fetchone()[0]


def test_a_second_benchmark_on_the_same_database_stops_and_leaves_it_alone():
    _url, admin_url, _name = bench_database_url("")
    name = f"ecard_claim_test_{uuid.uuid4().hex[:12]}"
    first = _bench(admin_url, name)
    try:
        assert first.stdout.readline() == b"recreated\n", first.stderr.read()
        with psycopg.connect(admin_url.rsplit("/", 1)[0] + "/" + name, autocommit=True) as conn:
            conn.execute("CREATE TABLE first_run_data (id int)")  # what the first run is using

            second = _bench(admin_url, name)
            out, err = second.communicate(timeout=60)
            assert second.returncode == 1 and out == b""
            assert f"Another benchmark is running on the database {name}".encode() in err
            # Not dropped: the first run's table is still there, on its connection still open.
            assert conn.execute("SELECT to_regclass('first_run_data') IS NOT NULL").fetchone()[0]
    finally:
        first.communicate(b"", timeout=60)
    # Once the first has ended, the next run claims the database again.
    third = _bench(admin_url, name)
    try:
        assert third.stdout.readline() == b"recreated\n", third.stderr.read()
    finally:
        third.communicate(b"", timeout=60)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert not _exists(admin_url, name)
