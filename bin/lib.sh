# Shared by bin/run and bin/test: a virtual environment from requirements.txt, and the services.
# shellcheck shell=bash

PYTHON=${PYTHON:-python3}

ensure_venv() {
    local stamp=".venv/.requirements.sha256" want
    want=$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)
    if [ ! -x .venv/bin/python ]; then
        echo "==> creating the virtual environment in .venv"
        "$PYTHON" -m venv .venv
    fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "==> installing requirements.txt"
        .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
        .venv/bin/python -m pip install --quiet -r requirements.txt -c constraints.txt
        echo "$want" > "$stamp"
    fi
}

_have() { command -v "$1" >/dev/null 2>&1; }

_apt_install() {
    if [ "$(id -u)" = 0 ] && _have apt-get; then
        echo "==> installing $* with apt-get"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        return 1
    fi
}

postgres_up() { .venv/bin/python - "$1" <<'PY' >/dev/null 2>&1
import sys, psycopg
psycopg.connect(sys.argv[1], connect_timeout=3).close()
PY
}

ensure_postgres() {
    local url="$1" admin_url="$2"
    if postgres_up "$admin_url"; then allow_local_replication "$admin_url"; return 0; fi
    echo "==> PostgreSQL is not answering; trying to start it"
    if ! _have pg_ctlcluster; then
        _apt_install postgresql || true
    fi
    if _have pg_ctlcluster; then
        local version
        version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
        if [ -n "$version" ]; then
            pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
            # Trust local TCP connections for the tests (only on a machine where we installed it ourselves).
            for _ in $(seq 1 30); do postgres_up "$admin_url" && break; sleep 1; done
        fi
    fi
    if postgres_up "$admin_url"; then allow_local_replication "$admin_url"; return 0; fi
    cat >&2 <<MSG
PostgreSQL is not reachable at $admin_url.
Start it (on Debian: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start),
or point TEST_DATABASE_URL at a PostgreSQL 15+ server whose user may create databases.
MSG
    return 1
}

# The replica router's tests (tests/portal/test_replica_router.py) copy the cluster with pg_basebackup,
# a replication connection that a pg_hba.conf line must allow ("all" does not cover it). On a local
# cluster whose pg_hba.conf we may write (root, as on the test machine) add
# `host replication all 127.0.0.1/32 trust` and reload; elsewhere those tests say what is missing.
allow_local_replication() { [ "$(id -u)" = 0 ] || return 0; .venv/bin/python - "$1" <<'PY' || true
import os, sys, psycopg
url = sys.argv[1]
try:
    psycopg.connect(url, replication="true", connect_timeout=3).close()
    sys.exit(0)
except psycopg.OperationalError as exc:
    if "no pg_hba.conf entry for replication" not in str(exc):
        sys.exit(0)
with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
    if conn.info.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(0)
    hba = conn.execute("SHOW hba_file").fetchone()[0]
    if not os.access(hba, os.W_OK):
        sys.exit(0)
    # Only where loopback connections are trusted already: the line must not weaken anything.
    if not any(line.split()[:5] == ["host", "all", "all", "127.0.0.1/32", "trust"] for line in open(hba)):
        sys.exit(0)
    with open(hba, "a") as f:
        f.write("\n# Added by the e-card portal's bin/test: pg_basebackup for the replica tests\n")
        f.write("host replication all 127.0.0.1/32 trust\n")
    conn.execute("SELECT pg_reload_conf()")
    print(f"==> allowed local replication connections in {hba} (for the replica tests)")
PY
}

redis_up() { .venv/bin/python - "$1" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=3).ping()
PY
}

ensure_redis() {
    local url="$1"
    redis_up "$url" && return 0
    echo "==> Redis is not answering; trying to start it"
    _have redis-server || _apt_install redis-server || true
    if _have redis-server; then
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 \
            || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
        for _ in $(seq 1 20); do redis_up "$url" && return 0; sleep 0.5; done
    fi
    cat >&2 <<MSG
Redis is not reachable at $url.
Start it (redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no),
or point TEST_REDIS_URL at a Redis 6+ server.
MSG
    return 1
}
