"""How long `make run` takes to serve the sign-in page: from a fresh clone, then warm.

    .venv/bin/python bench/startup_bench.py [--port 8799] [--keep]

Clones this repository's HEAD into a temporary folder and, with DATABASE_URL and REDIS_URL unset
(the embedded PostgreSQL and Redis), runs `make run` there three times, each until the sign-in page
answers:

1. cold: no .venv and no var/ (pip install, initdb, migrate, seed_demo's 2,000 citizens), then
   killed outright (SIGKILL to its whole process group, as a crash would);
2. warm, after that killed run (the data kept), then stopped with SIGTERM (what Ctrl-C does);
3. warm, after that clean stop.

For each it prints the seconds from start to: requirements installed (the supervisor's first
line), servers up, sign-in page answered; and how long the stop took. Nothing here is a test.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _signs_in(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2) as response:
            return b'name="login"' in response.read()
    except OSError:
        return False


def one_start(folder: Path, port: int, *, kill: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "ECARD_MODE", "VIRTUAL_ENV")}
    env["PORT"] = str(port)
    started = time.monotonic()
    marks: dict[str, float] = {}
    last: list[str] = []
    process = subprocess.Popen(
        ["make", "run"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )

    def read() -> None:
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            last[:] = [*last[-40:], line]
            if line.startswith("[stack]") and "installed" not in marks:
                marks["installed"] = time.monotonic() - started
            if "servers up in" in line:
                marks["servers_up"] = time.monotonic() - started

    threading.Thread(target=read, daemon=True).start()
    while not _signs_in(port):
        if process.poll() is not None:
            time.sleep(0.5)
            sys.exit(f"make run exited with {process.returncode}; its last lines:\n{''.join(last)}")
        if time.monotonic() - started > 900:
            sys.exit("no sign-in page after 15 minutes")
        time.sleep(0.1)
    marks["sign_in_page"] = time.monotonic() - started
    stopping = time.monotonic()
    if kill:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=120)
    marks["stop"] = time.monotonic() - stopping
    time.sleep(1)  # the children the kernel kills with the supervisor
    return {name: round(value, 1) for name, value in marks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ecard-startup-", dir=os.environ.get("TMPDIR", "/var/tmp"))) / "ecard"
    folder.parent.chmod(0o755)  # as root, the embedded PostgreSQL's own user reads the clone
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder)], check=True)
    try:
        report = {
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
            ).stdout.strip(),
            "cold_from_fresh_clone": one_start(folder, args.port, kill=True),
            "warm_after_a_killed_run": one_start(folder, args.port, kill=False),
            "warm": one_start(folder, args.port, kill=False),
        }
        report["leftover_processes"] = subprocess.run(
            ["pgrep", "-f", str(folder)], capture_output=True, text=True
        ).stdout.split()
        print(json.dumps(report, indent=2))
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
