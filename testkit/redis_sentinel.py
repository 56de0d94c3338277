"""A Redis master, its replica and one Sentinel (or three) on loopback, from the redis-server on PATH.

The Sentinel declares the master down after one second, so a test sees a whole failover in a few
seconds; `kill_master` SIGKILLs the master and `wait_failover` waits until the Sentinel names the
replica as the new master.
"""

import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.sentinel import MasterNotFoundError, Sentinel

from testkit.processes import free_port, wait_until

MASTER_NAME = "ecard"


class SentinelGroup:
    def __init__(self, sentinels: int = 1) -> None:
        self.password = secrets.token_urlsafe(12)
        self.folder = Path(tempfile.mkdtemp(prefix="ecard-sentinel-"))
        self.ports = {"a": free_port(), "b": free_port()}
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_port = self.sentinel_ports[0]  # the one the helpers below ask
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        sentinels = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://:{self.password}@{sentinels}/{MASTER_NAME}/0"

    def _server(self, name: str, replica_of: int | None) -> None:
        folder = self.folder / name
        folder.mkdir(exist_ok=True)
        conf = [
            "bind 127.0.0.1",
            f"port {self.ports[name]}",
            f"dir {folder}",
            f"requirepass {self.password}",
            f"masterauth {self.password}",
            "appendonly no",
            'save ""',
        ]
        if replica_of:
            conf.append(f"replicaof 127.0.0.1 {replica_of}")
        (folder / "redis.conf").write_text("\n".join(conf) + "\n")
        self._spawn(name, ["redis-server", str(folder / "redis.conf")], self.ports[name])

    def _spawn(self, name: str, command: list[str], port: int) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115  # the process writes it
        self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self._answers(port), timeout=10, what=f"redis {name} on {port}")

    def _answers(self, port: int) -> bool:
        try:
            return bool(redis.Redis(port=port, password=self.password, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def start(self) -> "SentinelGroup":
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
        self._server("a", None)
        self._server("b", self.ports["a"])
        wait_until(lambda: self.replica_in_sync("a"), timeout=10, what="the replica in sync")
        quorum = len(self.sentinel_ports) // 2 + 1
        for n, port in enumerate(self.sentinel_ports):
            folder = self.folder / f"sentinel{n}"
            folder.mkdir()
            (folder / "sentinel.conf").write_text(
                "\n".join(
                    [
                        "bind 127.0.0.1",
                        f"port {port}",
                        f"dir {folder}",
                        f"requirepass {self.password}",
                        f"sentinel sentinel-pass {self.password}",
                        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports['a']} {quorum}",
                        f"sentinel auth-pass {MASTER_NAME} {self.password}",
                        f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
                        f"sentinel failover-timeout {MASTER_NAME} 5000",
                    ]
                )
                + "\n"
            )
            # redis-server in Sentinel mode (the redis-sentinel package is only that link).
            self._spawn(f"sentinel{n}", ["redis-server", str(folder / "sentinel.conf"), "--sentinel"], port)
        wait_until(lambda: self.master_port() == self.ports["a"], timeout=10, what="the Sentinel watching a")
        return self

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, password=self.password, socket_timeout=1)

    def master_port(self) -> int | None:
        try:
            address = self.sentinel().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def node(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], password=self.password, socket_timeout=1)

    def replica_in_sync(self, master: str) -> bool:
        info = self.node(master).info("replication")
        return info.get("connected_slaves", 0) >= 1 and info.get("slave0", {}).get("state") == "online"

    def sync_replica(self, master: str) -> None:
        """Wait until the replica has every write the master took (WAIT)."""
        assert self.node(master).execute_command("WAIT", 1, 5000) >= 1

    def kill_master(self) -> tuple[str, float]:
        """SIGKILL the current master; its name and the time of the kill."""
        port = self.master_port()
        name = next(n for n, p in self.ports.items() if p == port)
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(10)
        return name, time.monotonic()

    def wait_failover(self, dead: str, timeout: float = 30) -> str:
        """The node the Sentinel promoted, once it names it as the master."""
        wait_until(lambda: self.master_port() not in (None, self.ports[dead]), timeout=timeout, what="a failover")
        promoted = next(n for n, p in self.ports.items() if p == self.master_port())
        wait_until(lambda: self.node(promoted).info("replication")["role"] == "master", timeout=10, what="promotion")
        # and until the Sentinel reports the new master healthy, which redis-py's clients require
        wait_until(lambda: self.discovered() == self.ports[promoted], timeout=10, what="the master discoverable")
        return promoted

    def discovered(self) -> int | None:
        """The master's port as redis-py's Sentinel client discovers it (None while it finds none)."""
        sentinel = Sentinel([("127.0.0.1", self.sentinel_port)], sentinel_kwargs={"password": self.password})
        try:
            return sentinel.discover_master(MASTER_NAME)[1]
        except MasterNotFoundError:
            return None

    def restart_as_replica(self, name: str) -> None:
        """Start a killed node again as the replica of the current master, and wait until in sync."""
        master = next(n for n, p in self.ports.items() if p == self.master_port())
        self._server(name, self.ports[master])
        wait_until(lambda: self.replica_in_sync(master), timeout=20, what=f"{name} in sync with {master}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
