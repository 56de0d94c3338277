"""A real streaming replica of the test cluster, for the replica router's tests.

`StreamingReplica.create()` copies the primary with `pg_basebackup -R -X stream` (a standby that
streams from it) into a temporary directory and starts it with the primary's own major version's
`pg_ctl` on a loopback port; `destroy()` stops it and deletes the directory. Everything the primary
writes afterwards, the pytest test database included, reaches it by streaming replication.

PostgreSQL refuses to run as root: as root, the commands run as the `postgres` OS user. The
primary must allow a replication connection from 127.0.0.1 (`host replication all 127.0.0.1/32
trust` in pg_hba.conf: bin/lib.sh adds it to a local cluster that trusts loopback already).
`register_alias()` points Django's `replica` alias at the standby's copy of the test database.
"""

import contextlib
import copy
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.db import connections

from portal.replica import REPLICA

# The standby's settings that must be at least the primary's, or it refuses to start.
_AT_LEAST_THE_PRIMARYS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


def server_bindir(major: int) -> Path | None:
    """The directory of PostgreSQL `major`'s server programs (Debian keeps one per version)."""
    debian = Path(f"/usr/lib/postgresql/{major}/bin")
    if (debian / "pg_ctl").exists() and (debian / "pg_basebackup").exists():
        return debian
    found = shutil.which("pg_ctl")
    if found and shutil.which("pg_basebackup"):
        return Path(found).parent
    return None


def unavailable_reason() -> str | None:
    """Why no replica can be made here, or None."""
    if shutil.which("pg_basebackup") is None and not any(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup")):
        return "pg_basebackup is not installed (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` OS user to run the replica as"
    return None


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class StreamingReplica:
    primary: str  # libpq conninfo of the primary (its `postgres` database)
    port: int
    directory: Path  # holds data/, the socket and server.log
    bindir: Path

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @classmethod
    def create(cls, *, host: str, port: int, user: str, password: str, replica_port: int) -> "StreamingReplica":
        primary = psycopg.conninfo.make_conninfo(host=host, port=port, user=user, password=password, dbname="postgres")
        with psycopg.connect(primary, autocommit=True) as conn:
            major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
            at_least = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in _AT_LEAST_THE_PRIMARYS}
        bindir = server_bindir(major)
        if bindir is None:
            raise RuntimeError(f"PostgreSQL {major}'s pg_ctl and pg_basebackup are not installed")
        directory = Path(tempfile.mkdtemp(prefix="ecard-replica-"))
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        replica = cls(primary=primary, port=replica_port, directory=directory, bindir=bindir)
        env = {**os.environ, "PGPASSWORD": password} if password else dict(os.environ)
        for attempt in range(3):
            # A fast checkpoint, not a spread one: the copy takes a second, not minutes. On a shared
            # cluster another session's checkpoint can end a copy's WAL stream: copy again.
            copied = subprocess.run(
                _as_server_user(
                    [str(bindir / "pg_basebackup"), "-h", host, "-p", str(port), "-U", user]
                    + ["-D", str(replica.data), "-R", "-X", "stream", "-c", "fast", "--no-sync"]
                ),
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if copied.returncode == 0 or "terminating connection" not in copied.stderr or attempt == 2:
                break
            shutil.rmtree(replica.data, ignore_errors=True)
        if copied.returncode != 0:
            shutil.rmtree(directory, ignore_errors=True)
            hint = ""
            if "no pg_hba.conf entry for replication" in copied.stderr:
                hint = (
                    "\nThe primary refuses replication connections: add `host replication all 127.0.0.1/32 trust`"
                    " to its pg_hba.conf and reload it (SELECT pg_reload_conf()); bin/test does so for a local"
                    " cluster that trusts loopback when run as root."
                )
            raise RuntimeError(f"pg_basebackup failed: {copied.stderr.strip()}{hint}")
        # Debian keeps the primary's configuration outside its data directory: the copy gets its own.
        (replica.data / "postgresql.conf").write_text(
            "hot_standby = on\nfsync = off\nshared_buffers = 32MB\nlogging_collector = off\n"
            + "".join(f"{name} = {value}\n" for name, value in at_least.items())
        )
        (replica.data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        (replica.data / "pg_ident.conf").write_text("")
        if os.geteuid() == 0:
            for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
                shutil.chown(replica.data / name, "postgres", "postgres")
        try:
            replica.start()
        except BaseException:
            replica.destroy()
            raise
        return replica

    def _pg_ctl(self, *args: str) -> None:
        done = subprocess.run(
            _as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl {args[-1]} failed: {done.stderr.strip()}\n{log}")

    def start(self) -> None:
        """Start the standby (again) and wait until it accepts connections."""
        # Given on the command line: they override whatever the copied postgresql.auto.conf says.
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._pg_ctl("-l", str(self.directory / "server.log"), "-w", "-t", "60", "-o", options, "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.conninfo("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError, OSError):
            if (self.data / "postmaster.pid").exists():
                self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def conninfo(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)

    def _on_standby(self, sql: str) -> object:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql).fetchone()[0]  # type: ignore[index]

    def pause_replay(self) -> None:
        """The standby keeps receiving WAL but applies none of it until `resume_replay()`."""
        self._on_standby("SELECT pg_wal_replay_pause()")
        self._wait_for(lambda: self._on_standby("SELECT pg_get_wal_replay_pause_state()") == "paused")

    def resume_replay(self) -> None:
        self._on_standby("SELECT pg_wal_replay_resume()")

    def wait_caught_up(self) -> None:
        """Until the standby has applied everything the primary had written when called."""
        with psycopg.connect(self.primary, autocommit=True) as conn:
            target = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        self._wait_for(lambda: self._on_standby(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") is True)

    @staticmethod
    def _wait_for(condition, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the replica did not get there in time")
            time.sleep(0.05)


def register_alias(replica: StreamingReplica) -> dict | None:
    """Point Django's `replica` alias at the standby's copy of the current (test) database; returns
    what the alias was before, for `unregister_alias`. Marked a test mirror of `default`, so that a
    transactional test flushes the primary only (the standby is read-only; it follows)."""
    previous = connections.settings.get(REPLICA)
    default = connections["default"].settings_dict
    settings_dict = copy.deepcopy(default)
    settings_dict.update(HOST="127.0.0.1", PORT=str(replica.port), USER="postgres", PASSWORD="", CONN_MAX_AGE=0)
    settings_dict["OPTIONS"] = {"connect_timeout": 2}
    settings_dict["TEST"] = {**default.get("TEST", {}), "MIRROR": "default"}
    _forget_connection()
    connections.settings[REPLICA] = settings_dict
    return previous


def unregister_alias(previous: dict | None) -> None:
    _forget_connection()
    if previous is None:
        connections.settings.pop(REPLICA, None)
    else:
        connections.settings[REPLICA] = previous


def _forget_connection() -> None:
    if REPLICA in connections.settings:
        with contextlib.suppress(Exception):
            connections[REPLICA].close()
        with contextlib.suppress(AttributeError):
            del connections[REPLICA]
