"""`make run`'s supervisor (bin/stack.py) on embedded PostgreSQL and Redis: it serves the portal,
restarts a process that dies, leaves nothing behind when it is killed, and starts again on the
same data."""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from testkit.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def _start(var: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        ECARD_MODE="demo",
        PORT=str(port),
        ECARD_VAR_DIR=str(var),
        DEMO_CITIZENS="20",
        ECARD_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
    )
    return subprocess.Popen(
        [sys.executable, "bin/stack.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _serves_sign_in(port: int, stack: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert stack.poll() is None, log.read_text()
        try:
            if 'name="login"' in httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=5).text:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no sign-in page after {timeout} s:\n{log.read_text()[-5000:]}")


def _children(stack: subprocess.Popen, word: str) -> list[psutil.Process]:
    return [p for p in psutil.Process(stack.pid).children() if word in " ".join(p.cmdline())]


def _wait_for(predicate, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not seen after {timeout} s:\n{log.read_text()[-5000:]}")
        time.sleep(0.2)


def test_the_stack_restarts_a_dead_process_and_a_killed_stack_leaves_nothing_behind():
    var = ROOT / "var" / "tests" / f"stack-{uuid.uuid4().hex[:8]}"
    var.mkdir(parents=True)
    log = var / "log" / "stack.log"
    port = free_port()
    stack = _start(var, port)
    try:
        _serves_sign_in(port, stack, log)
        env_file = (var / "run" / "stack.env").read_text()
        assert f"DATABASE_URL=postgres://postgres@{str(var / 'run').replace('/', '%2F')}/ecard" in env_file
        assert "REDIS_URL=redis://127.0.0.1:" in env_file

        # A worker that dies is restarted, and the restart is logged.
        (worker,) = _children(stack, "worker")
        assert "celery,imports" in worker.cmdline()  # it takes citizen imports too (their own queue)
        worker.kill()
        _wait_for(lambda: "[stack] | worker: restarting (restart 1)" in log.read_text(), 30, "the restart", log)
        _wait_for(
            lambda: len(_children(stack, "worker")) == 1 and _children(stack, "worker")[0].pid != worker.pid,
            30,
            "a new worker",
            log,
        )

        # The supervisor killed outright: every process it started dies with it.
        descendants = psutil.Process(stack.pid).children(recursive=True)
        assert {"postgres", "redis-server"} <= {p.name() for p in descendants}
        stack.kill()
        stack.wait()
        gone, alive = psutil.wait_procs(descendants, timeout=20)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]

        # ... and the next start reuses the data: no new cluster, no new demo data.
        stack = _start(var, port)
        _serves_sign_in(port, stack, log, timeout=60)
        text = log.read_text()
        assert text.count("creating the embedded PostgreSQL cluster") == 1
        assert "Demo data is already in place" in text

        # SIGTERM (what Ctrl-C does too) stops everything and ends cleanly.
        descendants = psutil.Process(stack.pid).children(recursive=True)
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(timeout=60) == 0
        gone, alive = psutil.wait_procs(descendants, timeout=10)
        assert not alive
        assert log.read_text().rstrip().endswith("[stack] | stopped")
        assert "Traceback" not in log.read_text()
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
        shutil.rmtree(var, ignore_errors=True)


def test_the_stack_uses_the_servers_it_is_given(settings):
    """With DATABASE_URL and REDIS_URL set, no embedded server starts. The demo runs without
    Django's debug pages even from a shell that sets DEBUG, and still serves its CSS and JS."""
    import psycopg

    server = settings.DATABASES["default"]
    name = f"ecard_stack_{uuid.uuid4().hex[:8]}"
    admin = f"postgres://{server['USER'] or 'postgres'}@{server['HOST'] or '127.0.0.1'}:{server['PORT'] or 5432}"
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_url = settings.REDIS_URL.rsplit("/", 1)[0] + "/14"  # not the suite's db: the stack queues tasks
    var = ROOT / "var" / "tests" / f"stack-{uuid.uuid4().hex[:8]}"
    var.mkdir(parents=True)
    log = var / "log" / "stack.log"
    port = free_port()
    env = {
        **os.environ,
        "ECARD_MODE": "demo",
        "PORT": str(port),
        "ECARD_VAR_DIR": str(var),
        "DEMO_CITIZENS": "5",
        "DATABASE_URL": f"{admin}/{name}",
        "REDIS_URL": redis_url,
        "ECARD_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "DEBUG": "1",
    }
    stack = subprocess.Popen(
        [sys.executable, "bin/stack.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _serves_sign_in(port, stack, log)
        names = {p.name() for p in psutil.Process(stack.pid).children(recursive=True)}
        assert not names & {"postgres", "redis-server"}
        assert f"DATABASE_URL={admin}/{name}\n" in (var / "run" / "stack.env").read_text()
        assert "embedded" not in log.read_text()
        assert not (var / "pg").exists()
        missing = httpx.get(f"http://127.0.0.1:{port}/no-such-page/", timeout=10)
        assert missing.status_code == 404
        assert "页面不存在" in missing.text and "URLconf" not in missing.text
        for asset in ("/static/css/portal.css", "/static/js/portal.js"):
            assert httpx.get(f"http://127.0.0.1:{port}{asset}", timeout=10).status_code == 200, asset
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(timeout=60) == 0
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
        shutil.rmtree(var, ignore_errors=True)
        with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
