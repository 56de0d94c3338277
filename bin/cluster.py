"""`bin/cluster up|down|status`: the production topology of deploy/ on this machine, on loopback.

Every engine comes from a Debian package and every configuration file from deploy/, rendered with
this machine's values (the @{NAME} placeholders of deploy/README.md): etcd, two Patroni nodes
running PostgreSQL (synchronous replication), HAProxy (writes to the leader, reads to the
replica), PgBouncer, Redis with Sentinel, two gunicorn web nodes behind nginx (TLS), one Celery
worker per queue and beat (started from the ExecStart lines of deploy/systemd's units, as systemd
would), a partner webhook receiver and Prometheus. Each runs as its own system user when this runs
as root (PostgreSQL refuses root); every file is under var/cluster/ (ECARD_CLUSTER_DIR).

`up` starts what is not running and waits until https://127.0.0.1:58443/healthz answers through
nginx; run again, it says the cluster is running. `down` stops every process it started (by the
process ids it recorded) and removes var/cluster/; `down --keep` keeps the data. `status` lists the
processes and the Patroni members.
"""

import base64
import contextlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
STATE = Path(os.environ.get("ECARD_CLUSTER_DIR", ROOT / "var" / "cluster")).resolve()
VENV_BIN = ROOT / ".venv" / "bin"
HOST = "127.0.0.1"

PORTS = {
    "etcd": 23790,
    "etcd_peer": 23800,
    "patroni1": 8101,
    "patroni2": 8102,
    "pg1": 55431,
    "pg2": 55432,
    "haproxy_write": 55000,
    "haproxy_read": 55001,
    "haproxy_stats": 8404,
    "pgbouncer": 56432,
    "redis1": 56379,  # Redis starts as the master here,
    "redis2": 56381,  # its replica here; Sentinel may swap them
    "sentinel1": 56380,
    "sentinel2": 56382,
    "sentinel3": 56383,
    "web1": 58001,
    "web2": 58002,
    "https": 58443,
    "http": 58080,
    "prometheus": 59090,
    "receiver": 58900,
}
QUEUES = ("deliveries", "imports", "periodic")
REDIS_NODES = ("redis1", "redis2")
SENTINELS = ("sentinel1", "sentinel2", "sentinel3")
SERVERS = {
    "etcd",
    "patroni-pg1",
    "patroni-pg2",
    "haproxy",
    "pgbouncer",
    "redis1",
    "redis2",
    "sentinel1",
    "sentinel2",
    "sentinel3",
}  # one ecard-worker@<queue> each
DEMO_CITIZENS = os.environ.get("CLUSTER_CITIZENS", "200")

# Debian packages providing each program (apt-get install when root; otherwise the command to run).
PACKAGES = {
    "etcd": "etcd-server",
    "etcdctl": "etcd-client",
    "patroni": "patroni",
    "haproxy": "haproxy",
    "pgbouncer": "pgbouncer",
    "redis-server": "redis-server",
    "redis-sentinel": "redis-sentinel",
    "nginx": "nginx-light",
    "prometheus": "prometheus",
    "openssl": "openssl",
}
POSTGRES_PACKAGE = "postgresql-15"


def shown(path: Path) -> str:
    """A path as the summary shows it: from the repository's root when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def say(text: str) -> None:
    print(f"[cluster] {text}", flush=True)


# --- Templates ------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"@\{([A-Z0-9_]+)\}")


def render(template: Path, values: dict[str, str]) -> str:
    """deploy/ files name what differs between deployments as @{NAME}; every one must be given."""
    text = template.read_text()
    missing = sorted({name for name in _PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise SystemExit(f"{template.relative_to(ROOT)}: no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def write(path: Path, text: str, owner: str | None = None, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    chown(path, owner)
    return path


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines, as systemd's EnvironmentFile= reads them (comments and blanks skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            env[name.strip()] = value.strip()
    return env


# --- Users ------------------------------------------------------------------------------------------

ROOT_RUN = os.geteuid() == 0
USERS = {  # the Debian packages' own system users; the portal gets its own
    "etcd": "etcd",
    "postgres": "postgres",
    "haproxy": "haproxy",
    "redis": "redis",
    "nginx": "www-data",
    "prometheus": "prometheus",
    "app": "ecard",
}


def _others_can_run(path: Path) -> bool:
    """Whether a user other than root can execute `path` (every folder above it searchable)."""
    real = path.resolve()
    return bool(real.stat().st_mode & 0o001) and all(folder.stat().st_mode & 0o001 for folder in real.parents)


def user_of(role: str) -> pwd.struct_passwd | None:
    """The system user `role`'s processes run as (None: this user, when not root).

    The portal runs as its own user `ecard` unless the virtual environment's Python is out of that
    user's reach (a pyenv interpreter under /root, say): then as the user running bin/cluster,
    rather than open /root to others.
    """
    if not ROOT_RUN:
        return None
    if role == "app" and not _others_can_run(VENV_BIN / "python"):
        return None
    name = USERS[role]
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if role != "app":
            raise SystemExit(f"the system user {name} is missing: reinstall its Debian package") from None
        useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
        subprocess.run(useradd, check=True)
        return pwd.getpwnam(name)


def chown(path: Path, role: str | None) -> None:
    if role is None or not ROOT_RUN:
        return
    user = user_of(role)
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def owned_dir(path: Path, role: str | None, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    chown(path, role)
    return path


def let_reach(path: Path) -> None:
    """Let the services' users search every folder above `path` (o+x), as bin/stack.py does."""
    for folder in reversed(path.parents):
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)
            say(f"let other users search {folder} (o+x)")


# --- Processes --------------------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    argv: list[str]
    role: str | None  # whose user it runs as
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    ready: Callable[[], bool] | None = None
    pre: list[list[str]] = field(default_factory=list)  # ExecStartPre=

    @property
    def pid_file(self) -> Path:
        return STATE / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return STATE / "log" / f"{self.name}.log"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/<pid>/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def recorded(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that very process (same start time) still runs."""
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == started else None


def _demote(user: pwd.struct_passwd | None) -> Callable[[], None]:
    def setup() -> None:
        os.setsid()
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    return setup


def start(service: Service) -> None:
    if recorded(service.pid_file):
        say(f"{service.name}: already running")
        return
    user = user_of(service.role) if service.role else None
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "HOME": user.pw_dir if user else os.environ.get("HOME", "/root"),
        **service.env,
    }
    for command in service.pre:
        subprocess.run(command, cwd=service.cwd, env=env, preexec_fn=_demote(user), check=False)  # noqa: PLW1509
    service.log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(service.log_file, "ab") as log:
        proc = subprocess.Popen(
            service.argv,
            cwd=service.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_demote(user),  # noqa: PLW1509 - setsid and the user, before exec
        )
    time.sleep(0.05)
    started = _start_time(proc.pid)
    if started is None:
        proc.wait()
        raise SystemExit(f"{service.name} exited at once (code {proc.returncode}); see {service.log_file}")
    service.pid_file.parent.mkdir(parents=True, exist_ok=True)
    service.pid_file.write_text(f"{proc.pid} {started}\n")
    say(f"{service.name}: started (pid {proc.pid}, log {shown(service.log_file)})")


def stop(names: list[str], timeout: float = 30) -> None:
    """SIGTERM the processes recorded for `names` (together), and SIGKILL what is left of their
    process groups after `timeout`."""
    groups = {}
    for name in names:
        pid_file = STATE / "run" / f"{name}.pid"
        pid = recorded(pid_file)
        if pid is None:
            pid_file.unlink(missing_ok=True)
            continue
        groups[name] = pid
        with contextlib.suppress(ProcessLookupError):  # the main process only, as systemd's KillMode=mixed
            os.kill(pid, signal.SIGTERM)
    # Each group's other members (gunicorn's or Celery's children) follow their parent.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_group_alive(pid) for pid in groups.values()):
        time.sleep(0.2)
    for name, pid in groups.items():
        if _group_alive(pid):
            say(f"{name}: still running after {timeout:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        (STATE / "run" / f"{name}.pid").unlink(missing_ok=True)
        say(f"{name}: stopped")


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies left unreaped by init do not count)."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            return True
    return False


def wait_for(check: Callable[[], bool], what: str, timeout: float, service: Service | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not ready yet
            pass
        if service is not None and not recorded(service.pid_file):
            tail = service.log_file.read_text(errors="replace")[-3000:] if service.log_file.exists() else ""
            raise SystemExit(f"{service.name} exited; the end of {service.log_file}:\n{tail}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not ready within {timeout:.0f} s; see {STATE / 'log'}")
        time.sleep(0.3)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0


def http_json(url: str, timeout: float = 3) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own loopback URLs
        return json.load(response)


def https_ok(url: str) -> bool:
    context = ssl.create_default_context(cafile=str(STATE / "tls" / "cert.pem"))
    with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
        return response.status == 200


# --- Installation -------------------------------------------------------------------------------------


def python_etcd_missing() -> bool:
    """Patroni's etcd client (python3-etcd), one of the alternatives its package depends on."""
    return not Path("/usr/lib/python3/dist-packages/etcd").is_dir()


def pg_bin_dir() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


def ensure_packages() -> None:
    missing = sorted({package for program, package in PACKAGES.items() if shutil.which(program) is None})
    if pg_bin_dir() is None:
        missing.append(POSTGRES_PACKAGE)
    if python_etcd_missing():
        missing.append("python3-etcd")
    if not missing:
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if not ROOT_RUN or shutil.which("apt-get") is None:
        raise SystemExit(
            "missing Debian packages; install them as root (no service is started on its default port"
            " if /usr/sbin/policy-rc.d answers 101):\n"
            "  printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d\n"
            f"  apt-get update && {' '.join(command)}\n"
            "  rm /usr/sbin/policy-rc.d"
        )
    # Packages start their services on the default ports (5432, 6379, 80...) unless policy-rc.d
    # forbids it: forbid it while installing.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        write(policy, "#!/bin/sh\n# bin/cluster: no service starts while packages install\nexit 101\n", mode=0o755)
    try:
        say(f"installing {' '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(command, check=True, env=env)
    finally:
        if ours:
            policy.unlink()


def reserve_ports() -> None:
    """Keep the kernel from handing the cluster's ports out as the local end of outgoing connections
    (they lie in the ephemeral range, 32768-60999 by default): a connection from, say, PgBouncer that
    happened to get port 58002 made the second web node fail to bind it."""
    reserved = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
    try:
        low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        current = reserved.read_text().strip()
    except (OSError, ValueError):
        return
    have: set[int] = set()
    for item in filter(None, current.split(",")):
        first, _, last = item.partition("-")
        have.update(range(int(first), int(last or first) + 1))
    wanted = sorted(port for port in PORTS.values() if low <= port <= high and port not in have)
    if not wanted:
        return
    if not ROOT_RUN:
        say(f"ports {wanted} may be taken by outgoing connections; as root: sysctl net.ipv4.ip_local_reserved_ports")
        return
    try:
        reserved.write_text(",".join(filter(None, [current, *map(str, wanted)])))
        say(f"reserved ports {', '.join(map(str, wanted))} from the kernel's ephemeral range")
    except OSError as exc:
        say(f"could not reserve ports {wanted} ({exc}); a collision with an outgoing connection stays possible")


# --- The cluster's values -----------------------------------------------------------------------------


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def load_secrets() -> dict[str, str]:
    """Passwords and keys made on the first `up` (kept by `down --keep`)."""
    path = STATE / "secrets.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    values = {
        "DB_PASSWORD": secrets.token_hex(16),
        "PG_SUPERUSER_PASSWORD": secrets.token_hex(16),
        "PG_REPLICATION_PASSWORD": secrets.token_hex(16),
        "PG_REWIND_PASSWORD": secrets.token_hex(16),
        "PGBOUNCER_ADMIN_PASSWORD": secrets.token_hex(16),
        "REDIS_PASSWORD": secrets.token_hex(16),
        "SECRET_KEY": secrets.token_urlsafe(48),
        "FIELD_ENCRYPTION_KEY": _key(),
        "BLIND_INDEX_KEY": _key(),
        "AUDIT_HMAC_KEY": _key(),
        "SIGNING_KEY_ENCRYPTION_KEY": _key(),
        "AUDIT_CHECKPOINT_KEY": _key(),
        "PATRONI_REST_PASSWORD": secrets.token_hex(16),
    }
    if kept.keys() >= values.keys():
        return kept
    values.update(kept)  # new ones added, the others kept
    write(path, json.dumps(values, indent=1), mode=0o600)
    return values


def values() -> dict[str, str]:
    p = PORTS
    bin_dir = pg_bin_dir()
    return {
        **load_secrets(),
        "APP_DIR": str(ROOT),
        "APP_USER": USERS["app"],
        "ENV_FILE": str(STATE / "ecard.env"),
        "STATE_DIR": str(STATE),
        "DB_USER": "ecard",
        "DB_NAME": "ecard",
        "PGBOUNCER_ADDR": f"{HOST}:{p['pgbouncer']}",
        "PGBOUNCER_HOST": HOST,
        "PGBOUNCER_PORT": str(p["pgbouncer"]),
        "PGBOUNCER_SOCKET_DIR": str(STATE / "pgbouncer"),
        "PGBOUNCER_PID_FILE": str(STATE / "pgbouncer" / "pgbouncer.pid"),
        "PGBOUNCER_LOG_FILE": str(STATE / "pgbouncer" / "pgbouncer.log"),
        "PGBOUNCER_AUTH_FILE": str(STATE / "pgbouncer" / "userlist.txt"),
        "PGBOUNCER_ADMIN": "pgbouncer",
        "HAPROXY_WRITE_HOST": HOST,
        "HAPROXY_WRITE_PORT": str(p["haproxy_write"]),
        "HAPROXY_WRITE_ADDR": f"{HOST}:{p['haproxy_write']}",
        "HAPROXY_READ_ADDR": f"{HOST}:{p['haproxy_read']}",
        "HAPROXY_STATS_ADDR": f"{HOST}:{p['haproxy_stats']}",
        # Each Redis node and Sentinel overrides its port and folder (see prepare).
        "REDIS_HOST": HOST,
        "REDIS_BIND": HOST,
        "REDIS_PORT": str(p["redis1"]),
        "REDIS_DIR": str(STATE / "redis1"),
        "REDIS_MAXMEMORY": "256mb",
        "SENTINEL_BIND": HOST,
        "SENTINEL_PORT": str(p["sentinel1"]),
        "SENTINEL_DIR": str(STATE / "sentinel1"),
        "SENTINEL_QUORUM": "2",
        "SENTINEL_ADDRS": ",".join(f"{HOST}:{p[name]}" for name in SENTINELS),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PUBLIC_BASE_URL": f"https://{HOST}:{p['https']}",
        "PUBLIC_AUTHORITY": f"{HOST}:{p['https']}",
        "EMAIL_HOST": "localhost",
        "DEFAULT_FROM_EMAIL": "e-card portal <noreply@ecard.invalid>",
        "WEBHOOK_PUBLIC_ONLY": "0",
        "WEB_BIND": f"{HOST}:{p['web1']}",  # each node's unit overrides it (see web_services)
        "WEB1_ADDR": f"{HOST}:{p['web1']}",
        "WEB2_ADDR": f"{HOST}:{p['web2']}",
        "NGINX_HTTP_LISTEN": f"{HOST}:{p['http']}",
        "NGINX_HTTPS_LISTEN": f"{HOST}:{p['https']}",
        "SERVER_NAME": "127.0.0.1 localhost",
        "TLS_CERT": str(STATE / "tls" / "cert.pem"),
        "TLS_KEY": str(STATE / "tls" / "key.pem"),
        "STATIC_ROOT": str(STATE / "app" / "staticfiles"),
        "NGINX_ACCESS_LOG": str(STATE / "log" / "nginx-access.log"),
        "NGINX_PROXY_PARAMS": str(STATE / "nginx" / "ecard-proxy.conf"),
        "PROMETHEUS_HOST": HOST,
        "PROMETHEUS_ADDR": f"{HOST}:{p['prometheus']}",
        "SCRAPE_INTERVAL": "5s",
        "PATRONI_SCOPE": "ecard",
        "ETCD_HOSTS": f"{HOST}:{p['etcd']}",
        "ETCD_NAME": "etcd1",
        "ETCD_DATA_DIR": str(STATE / "etcd" / "data"),
        "ETCD_CLIENT_ADDR": f"{HOST}:{p['etcd']}",
        "ETCD_PEER_ADDR": f"{HOST}:{p['etcd_peer']}",
        "ETCD_INITIAL_CLUSTER": f"etcd1=http://{HOST}:{p['etcd_peer']}",
        "PG_REPLICATION_USER": "replicator",
        "PG_NETWORK": "127.0.0.1/32",
        "PG_BIN_DIR": str(bin_dir) if bin_dir else "",
        "PG1_NAME": "pg1",
        "PG2_NAME": "pg2",
        "PG1_ADDR": f"{HOST}:{p['pg1']}",
        "PG2_ADDR": f"{HOST}:{p['pg2']}",
        "PG1_REST_PORT": str(p["patroni1"]),
        "PG2_REST_PORT": str(p["patroni2"]),
        "PG1_REST_ADDR": f"{HOST}:{p['patroni1']}",
        "PG2_REST_ADDR": f"{HOST}:{p['patroni2']}",
    }


def patroni_values(base: dict[str, str], node: str) -> dict[str, str]:
    folder = STATE / node
    return {
        **base,
        "PATRONI_NAME": node,
        "PATRONI_REST_ADDR": base[f"{node.upper()}_REST_ADDR"],
        "PG_ADDR": base[f"{node.upper()}_ADDR"],
        "PG_DATA_DIR": str(folder / "data"),
        "PG_PGPASS": str(folder / "pgpass"),
        "PG_SOCKET_DIR": str(folder),
    }


# --- The services, in the order they start --------------------------------------------------------


def unit_service(name: str, unit: Path, instance: str = "", env: dict[str, str] | None = None) -> Service:
    """A service from a rendered systemd unit: its ExecStartPre=/ExecStart= run as systemd would run
    them (EnvironmentFile= read, %i the instance, %H the host name, ${NAME} from the environment)."""
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    environment: dict[str, str] = {}
    for path in settings.get("EnvironmentFile", []):
        environment.update(read_env_file(Path(path.lstrip("-"))))
    environment.update(env or {})

    def command(line: str) -> list[str]:
        line = line.lstrip("-@:+!")
        line = line.replace("%i", instance).replace("%H", socket.gethostname()).replace("%%", "%")
        line = re.sub(r"\$\{(\w+)\}", lambda match: environment.get(match.group(1), ""), line)
        return shlex.split(line)

    (exec_start,) = settings["ExecStart"]
    return Service(
        name,
        command(exec_start),
        "app",
        env={**environment, "PYTHONUNBUFFERED": "1"},
        cwd=Path(settings["WorkingDirectory"][0]),
        pre=[command(line) for line in settings.get("ExecStartPre", [])],
    )


def prepare(v: dict[str, str]) -> None:
    """Render every deploy/ file into var/cluster/, with the owners and modes the services need."""
    STATE.mkdir(parents=True, exist_ok=True)
    let_reach(STATE)
    STATE.chmod(0o711)
    for folder in ("run", "log"):
        owned_dir(STATE / folder, None, 0o755)
    if ROOT_RUN:  # each service writes its own log
        for name, role in (("nginx-access", "nginx"),):
            log = STATE / "log" / f"{name}.log"
            log.touch()
            chown(log, role)
    # etcd
    owned_dir(STATE / "etcd", "etcd")
    write(STATE / "etcd" / "etcd.env", render(DEPLOY / "etcd" / "etcd.env", v), "etcd", 0o600)
    # Patroni: two nodes
    for node in ("pg1", "pg2"):
        owned_dir(STATE / node, "postgres")
        text = render(DEPLOY / "patroni" / "patroni.yml", patroni_values(v, node))
        write(STATE / node / "patroni.yml", text, "postgres", 0o600)
    # HAProxy, PgBouncer
    owned_dir(STATE / "haproxy", "haproxy")
    write(STATE / "haproxy" / "haproxy.cfg", render(DEPLOY / "haproxy" / "haproxy.cfg", v), "haproxy", 0o600)
    owned_dir(STATE / "pgbouncer", "postgres")
    write(STATE / "pgbouncer" / "pgbouncer.ini", render(DEPLOY / "pgbouncer" / "pgbouncer.ini", v), "postgres", 0o600)
    write(STATE / "pgbouncer" / "userlist.txt", render(DEPLOY / "pgbouncer" / "userlist.txt", v), "postgres", 0o600)
    # Redis: two nodes, the second the first's replica, and three Sentinels. Sentinel rewrites its own
    # file and, after a failover, the nodes' (`replicaof`): each is written once.
    for node in REDIS_NODES:
        owned_dir(STATE / node, "redis")
        conf = STATE / node / "redis.conf"
        if not conf.exists():
            text = render(
                DEPLOY / "redis" / "redis.conf", {**v, "REDIS_PORT": str(PORTS[node]), "REDIS_DIR": str(STATE / node)}
            )
            if node != REDIS_NODES[0]:  # as deploy/README.md says to add on a replica's host
                text += f"replicaof {HOST} {PORTS[REDIS_NODES[0]]}\n"
            write(conf, text, "redis", 0o600)
    for name in SENTINELS:
        owned_dir(STATE / name, "redis")
        conf = STATE / name / "sentinel.conf"
        if not conf.exists():
            text = render(
                DEPLOY / "redis" / "sentinel.conf",
                {**v, "SENTINEL_PORT": str(PORTS[name]), "SENTINEL_DIR": str(STATE / name)},
            )
            write(conf, text, "redis", 0o600)
    # The portal: its environment file and units
    owned_dir(STATE / "app", "app", 0o711)
    owned_dir(STATE / "app" / "staticfiles", "app", 0o755)
    owned_dir(STATE / "audit", "app")
    write(STATE / "ecard.env", render(DEPLOY / "ecard.env", v), None, 0o600)  # read by this script (root)
    owned_dir(STATE / "systemd", None, 0o755)
    for unit in (DEPLOY / "systemd").glob("*.service"):
        write(STATE / "systemd" / unit.name, render(unit, v), None, 0o644)
    # nginx: Debian's main file includes sites-enabled/*; here a main file of our own includes ecard.conf.
    owned_dir(STATE / "nginx", "nginx")
    write(STATE / "nginx" / "ecard.conf", render(DEPLOY / "nginx" / "ecard.conf", v), "nginx")
    write(STATE / "nginx" / "ecard-proxy.conf", render(DEPLOY / "nginx" / "ecard-proxy.conf", v), "nginx")
    nginx = STATE / "nginx"
    write(
        nginx / "nginx.conf",
        "# bin/cluster: the main file Debian's /etc/nginx/nginx.conf would be.\n"
        "worker_processes 1;\n"
        f"pid {nginx}/nginx.pid;\n"
        "error_log stderr warn;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        "    sendfile on;\n"
        f"    client_body_temp_path {nginx}/client_body;\n"
        f"    proxy_temp_path {nginx}/proxy;\n"
        f"    fastcgi_temp_path {nginx}/fastcgi;\n"
        f"    uwsgi_temp_path {nginx}/uwsgi;\n"
        f"    scgi_temp_path {nginx}/scgi;\n"
        f"    include {nginx}/ecard.conf;\n"
        "}\n",
        "nginx",
    )
    tls = owned_dir(STATE / "tls", "nginx", 0o700)
    if not (tls / "cert.pem").exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout",
                str(tls / "key.pem"),
                "-out",
                str(tls / "cert.pem"),
            ],
            check=True,
            capture_output=True,
        )
        for name in ("key.pem", "cert.pem"):
            chown(tls / name, "nginx")
        (tls / "cert.pem").chmod(0o644)
        tls.chmod(0o711)  # the certificate is public (the tests trust it); the key stays 0600
    # Prometheus
    owned_dir(STATE / "prometheus", "prometheus")
    text = render(DEPLOY / "prometheus" / "prometheus.yml", v)
    write(STATE / "prometheus" / "prometheus.yml", text, "prometheus", 0o644)
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    write(STATE / "prometheus" / "alerts.yml", alerts, "prometheus", 0o644)
    owned_dir(STATE / "receiver", "app", 0o755)


def patroni_members() -> list[dict]:
    """The Patroni cluster's members as either node's REST API reports them."""
    error: Exception | None = None
    for port in (PORTS["patroni1"], PORTS["patroni2"]):
        try:
            cluster = http_json(f"http://{HOST}:{port}/cluster")
        except OSError as exc:
            error = exc
            continue
        if isinstance(cluster, dict):
            return cluster.get("members", [])
    raise OSError(f"no Patroni node answers: {error}")


def etcd_healthy() -> bool:
    health = http_json(f"http://{HOST}:{PORTS['etcd']}/health")
    return isinstance(health, dict) and health.get("health") == "true"


def replicated() -> bool:
    members = patroni_members()
    roles = {m["role"] for m in members if m.get("state") in ("running", "streaming")}
    return "leader" in roles and "sync_standby" in roles


def redis_client(name: str) -> redis.Redis:
    """A client of one Redis node or Sentinel of the cluster (they share the password)."""
    password = load_secrets()["REDIS_PASSWORD"]
    return redis.Redis(host=HOST, port=PORTS[name], password=password, socket_timeout=2, socket_connect_timeout=2)


def redis_master() -> str | None:
    """The Redis node the Sentinels agree is the master (None while they do not agree)."""
    named = set()
    for name in SENTINELS:
        try:
            host, port = redis_client(name).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "ecard")
        except (redis.RedisError, ValueError, TypeError):
            return None
        named.add(int(port))
    return next((node for node in REDIS_NODES if named == {PORTS[node]}), None)


def redis_watched() -> bool:
    """The Sentinels agree on the master, know each other, and the other node replicates it in sync."""
    master = redis_master()
    if master is None:
        return False
    try:
        for name in SENTINELS:
            state = redis_client(name).execute_command("SENTINEL", "MASTER", "ecard")
            fields = dict(zip(state[::2], state[1::2], strict=True))
            if int(fields[b"num-other-sentinels"]) != len(SENTINELS) - 1 or int(fields[b"num-slaves"]) < 1:
                return False
        info = redis_client(master).info("replication")
    except (redis.RedisError, KeyError, ValueError):
        return False
    return info.get("role") == "master" and info.get("slave0", {}).get("state") == "online"


def haproxy_routes() -> dict[str, set[str]]:
    """The servers HAProxy has UP in each PostgreSQL section (its stats page as CSV)."""
    url = f"http://{HOST}:{PORTS['haproxy_stats']}/stats;csv"
    with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - our own loopback URL
        rows = [line.split(",") for line in response.read().decode().splitlines()[1:]]
    routes: dict[str, set[str]] = {"postgres_write": set(), "postgres_read": set()}
    for row in rows:
        if row[0] in routes and row[1] not in ("FRONTEND", "BACKEND") and row[17] == "UP":
            routes[row[0]].add(row[1])
    return routes


def haproxy_follows_patroni() -> bool:
    """Writes go to the leader alone, reads to the synchronous standby (HAProxy deems every server
    up until its checks say otherwise)."""
    roles = {m["name"]: m["role"] for m in patroni_members()}
    leader = {name for name, role in roles.items() if role == "leader"}
    standby = {name for name, role in roles.items() if role == "sync_standby"}
    routes = haproxy_routes()
    return bool(leader) and routes["postgres_write"] == leader and routes["postgres_read"] == standby


def run_app(argv: list[str], env: dict[str, str], what: str) -> None:
    """A one-shot command (migrate, seed...) as the portal's user, its output to its log."""
    user = user_of("app")
    log = STATE / "log" / f"{what}.log"
    say(f"{what}: {' '.join(argv[1:])}")
    with open(log, "ab") as out:
        code = subprocess.run(
            argv,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_demote(user),  # noqa: PLW1509
        ).returncode
    if code:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{what} failed (exit code {code}); the end of {log}:\n{tail}")


def create_database(v: dict[str, str]) -> None:
    """The portal's role and database, through HAProxy's write port (the leader), once."""
    import psycopg

    url = f"postgres://postgres:{v['PG_SUPERUSER_PASSWORD']}@{v['HAPROXY_WRITE_ADDR']}/postgres"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'ecard'").fetchone() is None:
            conn.execute(f"CREATE ROLE ecard LOGIN PASSWORD '{v['DB_PASSWORD']}'")  # hex: nothing to quote
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'ecard'").fetchone() is None:
            conn.execute("CREATE DATABASE ecard OWNER ecard")


def services(v: dict[str, str]) -> list[Service]:
    """Every long-running process, in the order `up` starts them (`down` stops them in reverse)."""
    etcd_env = read_env_file(STATE / "etcd" / "etcd.env")
    bin_dir = v["PG_BIN_DIR"]
    units = STATE / "systemd"
    result = [
        Service(
            "etcd",
            ["etcd"],
            "etcd",
            env=etcd_env,
            ready=etcd_healthy,
        ),
        *(
            Service(
                f"patroni-{node}",
                ["patroni", str(STATE / node / "patroni.yml")],
                "postgres",
                env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                cwd=STATE / node,
            )
            for node in ("pg1", "pg2")
        ),
        Service(
            "haproxy",
            ["haproxy", "-W", "-db", "-f", str(STATE / "haproxy" / "haproxy.cfg")],
            "haproxy",
            ready=lambda: port_open(PORTS["haproxy_write"]),
        ),
        Service(
            "pgbouncer",
            ["pgbouncer", str(STATE / "pgbouncer" / "pgbouncer.ini")],
            "postgres",
            ready=lambda: port_open(PORTS["pgbouncer"]),
        ),
        *(
            Service(name, [program, str(STATE / name / conf)], "redis", ready=lambda n=name: port_open(PORTS[n]))
            for names, program, conf in (
                (REDIS_NODES, "redis-server", "redis.conf"),
                (SENTINELS, "redis-sentinel", "sentinel.conf"),
            )
            for name in names
        ),
        *(
            unit_service(node, units / "ecard-web.service", env={"GUNICORN_BIND": v[f"{node.upper()}_ADDR"]})
            for node in ("web1", "web2")
        ),
        Service(
            "nginx",
            ["nginx", "-e", "stderr", "-p", str(STATE / "nginx"), "-c", str(STATE / "nginx" / "nginx.conf")]
            + ["-g", "daemon off;"],
            "nginx",
            ready=lambda: port_open(PORTS["https"]),
        ),
        *(unit_service(f"worker-{queue}", units / "ecard-worker@.service", queue) for queue in QUEUES),
        unit_service("beat", units / "ecard-beat.service"),
        Service(
            "receiver",
            [str(VENV_BIN / "python"), str(ROOT / "bin" / "cluster_receiver.py")]
            + [f"{HOST}:{PORTS['receiver']}", str(STATE / "receiver" / "events.jsonl")],
            "app",
            ready=lambda: port_open(PORTS["receiver"]),
        ),
        Service(
            "prometheus",
            [
                "prometheus",
                f"--config.file={STATE / 'prometheus' / 'prometheus.yml'}",
                f"--storage.tsdb.path={STATE / 'prometheus' / 'data'}",
                f"--web.listen-address={HOST}:{PORTS['prometheus']}",
                "--storage.tsdb.retention.time=2d",
            ],
            "prometheus",
            ready=lambda: port_open(PORTS["prometheus"]),
        ),
    ]
    return result


def all_running(v: dict[str, str]) -> bool:
    return all(recorded(service.pid_file) for service in services(v))


def up() -> None:
    started = time.monotonic()
    ensure_packages()
    if (STATE / "ecard.env").exists() and all_running(values()):
        say("the cluster is already running")
        summary(values(), None)
        return
    nothing_running = not any(recorded(pid) for pid in (STATE / "run").glob("*.pid"))
    if nothing_running:
        taken = sorted(f"{port} ({name})" for name, port in PORTS.items() if port_open(port))
        if taken:
            raise SystemExit(
                "these ports of the cluster are taken by other processes: "
                + ", ".join(taken)
                + "\n(`ss -ltnp` names them); stop those, or run the cluster elsewhere"
            )
    v = values()
    reserve_ports()
    if ROOT_RUN and user_of("app") is None:
        say(f"the portal runs as root: {VENV_BIN / 'python'} is out of the reach of the user ecard")
    prepare(v)
    by_name = {service.name: service for service in services(v)}

    def bring(name: str, what: str = "", timeout: float = 60) -> None:
        service = by_name[name]
        start(service)
        if service.ready is not None:
            wait_for(service.ready, what or name, timeout, service)

    bring("etcd")
    bring("patroni-pg1")
    wait_for(lambda: any(m["role"] == "leader" for m in patroni_members()), "the Patroni leader", 120)
    bring("patroni-pg2")
    wait_for(replicated, "a leader and a synchronous standby", 180, by_name["patroni-pg2"])
    say(f"PostgreSQL: leader and synchronous standby after {time.monotonic() - started:.0f} s")
    bring("haproxy")
    wait_for(haproxy_follows_patroni, "HAProxy's routes (writes to the leader, reads to the standby)", 30)
    wait_for(lambda: create_database(v) is None, "the leader through HAProxy", 60, by_name["haproxy"])
    bring("pgbouncer")
    for name in (*REDIS_NODES, *SENTINELS):
        bring(name)
    wait_for(redis_watched, "Sentinels agreeing on the Redis master, its replica in sync", 60)
    app_env = read_env_file(STATE / "ecard.env")
    python = str(VENV_BIN / "python")
    run_app([python, "manage.py", "migrate", "--noinput"], app_env, "migrate")
    run_app(
        [python, "manage.py", "collectstatic", "--noinput", "--clear", "--verbosity", "0"], app_env, "collectstatic"
    )
    # seed_demo runs in demo mode only (made-up citizens, known passwords), with the cluster's keys;
    # the demo partners' webhooks go to the receiver.
    receiver = f"http://{HOST}:{PORTS['receiver']}"
    seed_env = {**app_env, "ECARD_MODE": "demo", "ECARD_PUBLIC_BASE_URL": receiver}
    run_app([python, "manage.py", "seed_demo", "--citizens", DEMO_CITIZENS], seed_env, "seed")
    for name in ("web1", "web2"):
        bring(name, timeout=60)
    for name in ("web1", "web2"):
        wait_for(lambda n=name: port_open(PORTS[n]), name, 60, by_name[name])
    bring("nginx")
    for queue in QUEUES:
        bring(f"worker-{queue}")
    bring("beat")
    bring("receiver")
    bring("prometheus")
    healthz = f"https://{HOST}:{PORTS['https']}/healthz"
    wait_for(lambda: https_ok(healthz), healthz, 60)
    summary(v, time.monotonic() - started)


def summary(v: dict[str, str], seconds: float | None) -> None:
    p = PORTS
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    print(
        f"""
The cluster is up{took} (state in {shown(STATE)}/, logs in {shown(STATE / "log")}/):
  portal          https://{HOST}:{p["https"]}/   (self-signed: {shown(STATE)}/tls/cert.pem)
                  sign in as clerk / ecard-demo-2019 (or ECARD_DEMO_PASSWORD; README.md lists every account)
  web nodes       http://{HOST}:{p["web1"]}/  http://{HOST}:{p["web2"]}/
  PostgreSQL      writes {HOST}:{p["haproxy_write"]} (HAProxy: leader), reads {HOST}:{p["haproxy_read"]} (replica),
                  PgBouncer {HOST}:{p["pgbouncer"]}, nodes {HOST}:{p["pg1"]} and {HOST}:{p["pg2"]}
  Patroni         http://{HOST}:{p["patroni1"]}/cluster  (patronictl -c {shown(STATE)}/pg1/patroni.yml list)
  HAProxy stats   http://{HOST}:{p["haproxy_stats"]}/stats
  Redis           nodes {HOST}:{p["redis1"]} and {HOST}:{p["redis2"]} (master: {redis_master() or "?"}),
                  Sentinels {v["SENTINEL_ADDRS"]}
  Prometheus      http://{HOST}:{p["prometheus"]}/targets
  webhooks        received by {HOST}:{p["receiver"]}, recorded in {shown(STATE)}/receiver/events.jsonl
  environment     {shown(STATE)}/ecard.env (passwords and keys: {shown(STATE)}/secrets.json)
`bin/cluster down` stops it and removes {shown(STATE)}/ (`down --keep` keeps the data)."""
    )


def down(keep: bool) -> None:
    if not STATE.exists():
        say("no cluster here")
        return
    names = [p.stem for p in (STATE / "run").glob("*.pid")] if (STATE / "run").exists() else []
    order = [s.name for s in services(values())] if (STATE / "ecard.env").exists() else names
    # The standby before the leader: stopping the leader first would make the standby take over.
    leader = None
    with contextlib.suppress(Exception):
        leader = next(m["name"] for m in patroni_members() if m["role"] == "leader")
    # The portal first, then the servers it uses, the standby before the leader, etcd last.
    apps = [name for name in reversed(order) if name not in SERVERS]
    tiers = [apps, [*SENTINELS, *REDIS_NODES, "pgbouncer", "haproxy"]]
    patroni = [f"patroni-{node}" for node in ("pg1", "pg2")]
    if leader:
        patroni.sort(key=lambda name: name == f"patroni-{leader}")
    tiers += [[name] for name in patroni]
    tiers += [["etcd"], names]  # and anything recorded that is not in the list (an older layout)
    for tier in tiers:
        stop(tier, timeout=60 if any(name.startswith("patroni") for name in tier) else 30)
    if keep:
        say(f"stopped; the data is kept in {STATE}")
    else:
        shutil.rmtree(STATE)
        say(f"stopped; removed {STATE}")


def status() -> int:
    if not (STATE / "ecard.env").exists():
        say("no cluster here")
        return 1
    running = True
    for service in services(values()):
        pid = recorded(service.pid_file)
        running &= pid is not None
        print(f"  {service.name:<18} {f'running (pid {pid})' if pid else 'stopped'}")
    with contextlib.suppress(Exception):
        for member in patroni_members():
            print(f"  patroni {member['name']}: {member['role']} {member['state']} lag={member.get('lag', 0)}")
    return 0 if running else 1


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "install":  # the Debian packages only (CI, before the tests of deploy/'s files)
        ensure_packages()
    elif command == "up":
        up()
    elif command == "down":
        down(keep="--keep" in argv[1:])
    elif command == "status":
        return status()
    elif command == "drill":  # bin/cluster runs bin/cluster_drill.py itself; this for `python bin/cluster.py drill`
        import cluster_drill

        return cluster_drill.main(argv[1:])
    else:
        print("usage: bin/cluster install | up | down [--keep] | status | drill [--short]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
