"""Running code on the demo's database from the PostgreSQL test suite.

The suite runs on PostgreSQL; the demo (`make run` without DATABASE_URL / REDIS_URL) runs on
SQLite and Django's local-memory cache. Code paths that exist only for the demo are checked in a
subprocess started with the demo's environment: no DATABASE_URL, no REDIS_URL, a fresh SQLite
file and var directory under `tmp_path`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_on_demo_database(args: list[str], tmp_path: Path, *, timeout: int = 300) -> dict:
    """Run `python <args>` against a fresh demo database; the JSON document its last line prints.
    A non-zero exit fails the test with the end of its stderr."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("DATABASE_URL", "REDIS_URL", "PYTEST_ADDOPTS")}
    env.update({"SQLITE_PATH": str(tmp_path / "demo.sqlite3"), "ECARD_VAR_DIR": str(tmp_path / "var"),
                "DJANGO_SETTINGS_MODULE": "portal.settings", "DEBUG": "0"})
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-6000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
