"""Real processes and servers for the tests and the benchmarks.

`CeleryWorker` runs `.venv/bin/celery -A portal worker` as a subprocess in its
own process group (so that a SIGKILL takes its embedded beat along), waits
until it says it is ready, and always kills it. `WebhookReceiver` is a
asyncio HTTP/1.1 (keep-alive) server on loopback that records every request
and can answer an error, hold a request, or be stopped and started again on
the same port.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
CELERY = str(BASE_DIR / ".venv" / "bin" / "celery")


def database_url_for_current_connection() -> str:
    """The URL of the database this process uses (the pytest test database in tests)."""
    s = connection.settings_dict
    auth = s["USER"] or "postgres"
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def gunicorn_process(
    db_url: str, port: int, workers: int, *, stderr_path: str | None = None, **environ: str
) -> subprocess.Popen:
    """The repository's gunicorn.conf.py on `port`, started (not waited for), the access log written
    (as in production) to /dev/null; `environ` adds or overrides settings; `stderr_path` keeps the
    processes' own log (gunicorn's and the portal's). The caller stops it."""
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "WEB_CONCURRENCY": str(workers),
        "PORT": str(port),
        "GUNICORN_ACCESS_LOG": os.devnull,
        "GUNICORN_LOG_LEVEL": "warning",
        "DEBUG": "0",
        "LOG_LEVEL": "ERROR",
        **environ,
    }
    command = [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "portal.wsgi"]
    if stderr_path is None:
        return subprocess.Popen(command, cwd=BASE_DIR, env=env)
    with open(stderr_path, "wb") as stderr:
        return subprocess.Popen(command, cwd=BASE_DIR, env=env, stderr=stderr)


def start_gunicorn(port: int, **environ: str) -> subprocess.Popen:
    """A real gunicorn on `port` with the repository's gunicorn.conf.py, one worker, on the test
    database (`environ` adds or overrides settings), as the benchmarks start it; the caller
    terminates it."""
    return gunicorn_process(database_url_for_current_connection(), port, 1, **environ)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CeleryWorker:
    """One `celery worker` process (threads pool), optionally with an embedded beat."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        name: str = "w",
        concurrency: int = 4,
        beat: bool = True,
        pool: str = "threads",
        log_dir: str | None = None,
        queues: str | None = None,
    ):
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.name = f"{name}-{os.getpid()}-{time.monotonic_ns()}"
        self.concurrency = concurrency
        self.beat = beat
        self.pool = pool
        # None: every queue of CELERY_TASK_QUEUES, as a worker started without -Q consumes them
        self.queues = queues
        self._dir = log_dir or tempfile.mkdtemp(prefix="ecard-worker-")
        self.log_path = Path(self._dir) / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> "CeleryWorker":
        args = [
            CELERY,
            "-A",
            "portal",
            "worker",
            "-P",
            self.pool,
            "-c",
            str(self.concurrency),
            *(["-Q", self.queues] if self.queues else []),
            "-n",
            f"{self.name}@%h",
            "-l",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        if self.beat:
            args += ["-B", "-s", str(Path(self._dir) / f"{self.name}-beat-schedule")]
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open by the child
        self.proc = subprocess.Popen(
            args, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.proc.returncode}:\n{self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"celery worker not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)  # the group we created with start_new_session
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the worker and its embedded beat, as a crash would."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._signal_group(signal.SIGKILL)  # any orphaned beat child
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)

    def dump_log(self) -> None:
        sys.stderr.write(f"\n----- log of celery worker {self.name} -----\n{self.log()}\n-----\n")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class WebhookReceiver:
    """A small asyncio HTTP/1.1 server (keep-alive) on loopback, in a thread of this process.

    Cheap enough per request that the benchmark measures the portal, not the receiver.
    `status` is the answer; `hold_next()` makes the next request wait after it is recorded.
    """

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.status = 204
        self._hold: threading.Event | None = None
        self._received: list[Received] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    def start(self) -> "WebhookReceiver":
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def serve() -> None:
                self._server = await asyncio.start_server(
                    self._handle, "127.0.0.1", self.port, backlog=512, reuse_address=True
                )
                ready.set()

            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name=f"receiver-{self.port}")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("webhook receiver did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if " " in lines[0] else ""
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                with self._cond:
                    self._received.append(Received(path, headers, body, time.time()))
                    self._cond.notify_all()
                    hold, self._hold = self._hold, None
                    status = self.status
                if hold is not None:
                    await asyncio.to_thread(hold.wait, 60)
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    def hold_next(self) -> threading.Event:
        """Make the next request wait (after it is recorded) until the returned event is set."""
        release = threading.Event()
        with self._cond:
            self._hold = release
        return release

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 20) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._received):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"receiver got {len(self._received)} requests, not what was awaited")
                self._cond.wait(remaining)
            return list(self._received)


def wait_until(check: Callable[[], bool], timeout: float = 20, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


class RedisServer:
    """A throwaway `redis-server` on a loopback port of its own, with no persistence: stopped and
    started again on the same port, it is a Redis restart (its data gone, as with `--save ""`)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> "RedisServer":
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
