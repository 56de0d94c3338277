"""`bin/cluster up` brings the deploy/ topology up on loopback, and it works end to end.

It starts some twenty processes on fixed ports (etcd, two Patroni/PostgreSQL nodes, HAProxy,
PgBouncer, Redis and Sentinel, two web nodes, nginx, three workers, beat, a webhook receiver and
Prometheus) and takes a minute or two, so it runs only with ECARD_CLUSTER_TESTS=1:

    ECARD_CLUSTER_TESTS=1 bin/test tests/test_cluster.py

It brings the cluster down at the end (a cluster already running is reused, then brought down).
"""

import json
import os
import re
import secrets
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from testkit.partner_client import PartnerClient, verify_webhook

pytestmark = pytest.mark.skipif(
    os.environ.get("ECARD_CLUSTER_TESTS") != "1",
    reason="starts the whole deploy/ topology with bin/cluster (a minute or two): set ECARD_CLUSTER_TESTS=1",
)

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "var" / "cluster"
PORTAL = "https://127.0.0.1:58443"
PATRONI = "http://127.0.0.1:8101"


def _cluster(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "ECARD_MODE")}
    return subprocess.run(
        [str(ROOT / "bin" / "cluster"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def cluster():
    """The cluster, brought up for these tests and down after, or the one already running (CI's,
    for the drill after these), left running."""
    if _cluster("status").returncode == 0:
        yield json.loads((STATE / "secrets.json").read_text())
        return
    started = time.monotonic()
    result = _cluster("up")
    took = time.monotonic() - started
    print(f"\nbin/cluster up took {took:.0f} s")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "The cluster is up" in result.stdout
        yield json.loads((STATE / "secrets.json").read_text())
    finally:
        down = _cluster("down", timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not STATE.exists()


@pytest.fixture
def tls(monkeypatch):
    cert = str(STATE / "tls" / "cert.pem")
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # httpx (the partner client) trusts the cluster's certificate
    return ssl.create_default_context(cafile=cert)


def _members() -> dict[str, dict]:
    return {m["role"]: m for m in httpx.get(f"{PATRONI}/cluster", timeout=5).json()["members"]}


def test_patroni_has_a_leader_and_a_synchronous_standby(cluster):
    members = _members()
    assert members["leader"]["state"] == "running"
    assert members["sync_standby"]["state"] in ("running", "streaming")
    config = httpx.get(f"{PATRONI}/config", timeout=5).json()
    assert config["synchronous_mode"] is True
    # Changing the cluster takes the REST API's password.
    assert httpx.post(f"{PATRONI}/restart", json={}, timeout=5).status_code == 401


def test_a_write_through_haproxy_lands_on_the_leader_and_reaches_the_replica(cluster):
    members = _members()
    password = cluster["DB_PASSWORD"]
    token = secrets.token_hex(8)
    with psycopg.connect(f"postgres://ecard:{password}@127.0.0.1:55000/ecard", autocommit=True) as conn:
        assert conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone() == (
            members["leader"]["port"],
            False,
        )
        conn.execute("CREATE TABLE IF NOT EXISTS cluster_probe (token text PRIMARY KEY)")
        conn.execute("INSERT INTO cluster_probe VALUES (%s)", [token])
    with psycopg.connect(f"postgres://ecard:{password}@127.0.0.1:55001/ecard", autocommit=True) as conn:
        assert conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone() == (
            members["sync_standby"]["port"],
            True,
        )
        deadline = time.monotonic() + 10  # flushed there at commit; replayed a moment later
        while conn.execute("SELECT 1 FROM cluster_probe WHERE token = %s", [token]).fetchone() is None:
            assert time.monotonic() < deadline, "the row never reached the replica"
            time.sleep(0.1)
    # The portal itself writes through PgBouncer to the same leader.
    with psycopg.connect(f"postgres://ecard:{password}@127.0.0.1:56432/ecard", autocommit=True) as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone() == (members["leader"]["port"],)
        assert conn.execute("SELECT count(*) FROM portal_user").fetchone()[0] > 0


def test_redis_is_persistent_and_watched_by_three_sentinels(cluster):
    password = cluster["REDIS_PASSWORD"]
    masters = set()
    for port in (56380, 56382, 56383):
        sentinel = redis.Redis(port=port, password=password)
        _host, master_port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "ecard")
        masters.add(int(master_port))
        state = sentinel.execute_command("SENTINEL", "MASTER", "ecard")
        fields = dict(zip(state[::2], state[1::2], strict=True))
        assert (fields[b"quorum"], fields[b"num-other-sentinels"], fields[b"num-slaves"]) == (b"2", b"2", b"1")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
    assert len(masters) == 1 and masters <= {56379, 56381}
    master_port = masters.pop()
    master = redis.Redis(port=master_port, password=password)
    assert master.config_get("appendonly") == {"appendonly": "yes"}
    assert master.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert master.llen("deliveries") >= 0  # the broker's queues live here
    replica = redis.Redis(port=({56379, 56381} - {master_port}).pop(), password=password)
    assert replica.info("replication")["role"] == "slave"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=master_port).ping()
    # The portal finds the master through the Sentinels (deploy/ecard.env).
    env = (STATE / "ecard.env").read_text()
    assert f"REDIS_URL=redis+sentinel://:{password}@127.0.0.1:56380,127.0.0.1:56382,127.0.0.1:56383/ecard/0" in env


def test_nginx_serves_the_portal_over_tls_and_a_clerk_signs_in(cluster, tls):
    with httpx.Client(base_url=PORTAL, verify=tls, timeout=20) as client:
        assert client.get("/healthz").json() == {"ok": True}
        page = client.get("/accounts/login/")
        assert page.status_code == 200 and 'name="login"' in page.text
        assert page.headers["strict-transport-security"].startswith("max-age=")  # production mode
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        signed_in = client.post(
            "/accounts/login/",
            data={"csrfmiddlewaretoken": csrf, "login": "clerk", "password": "ecard-demo-2019"},
            headers={"Referer": f"{PORTAL}/accounts/login/"},
            follow_redirects=True,
        )
        assert signed_in.status_code == 200, signed_in.text[:500]
        assert "/accounts/login/" not in str(signed_in.url)
        assert "clerk" in signed_in.text
        # The static files come from nginx (collectstatic's output), not from the web nodes.
        css = client.get("/static/css/portal.css")
        assert css.status_code == 200 and "gunicorn" not in css.headers.get("server", "")
        assert css.headers["server"].startswith("nginx")
        # Plain http is redirected to https.
        redirect = httpx.get("http://127.0.0.1:58080/accounts/login/", follow_redirects=False)
        assert redirect.status_code == 301
        assert redirect.headers["location"] == f"{PORTAL}/accounts/login/"


def test_the_portal_sees_the_client_address_nginx_received_not_one_the_client_wrote(cluster, tls):
    """ECARD_TRUSTED_PROXY_COUNT=1 with nginx appending to X-Forwarded-For: the client's address is
    the one nginx saw (127.0.0.2 here), neither nginx's own (REMOTE_ADDR at gunicorn) nor the
    X-Forwarded-For the client sent. Five failed sign-ins lock the account, which is audited with it."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2", verify=tls)
    with httpx.Client(base_url=PORTAL, transport=transport, timeout=20) as client:
        for _ in range(5):
            page = client.get("/accounts/login/")
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            client.post(
                "/accounts/login/",
                data={"csrfmiddlewaretoken": csrf, "login": "clerk_gd", "password": "not-the-password-1"},
                headers={"Referer": f"{PORTAL}/accounts/login/", "X-Forwarded-For": "203.0.113.7"},
            )
        # /metrics is for the Prometheus host (127.0.0.1) only.
        assert client.get("/metrics").status_code == 403
    assert httpx.get(f"{PORTAL}/metrics", verify=tls).status_code != 403
    with psycopg.connect(f"postgres://ecard:{cluster['DB_PASSWORD']}@127.0.0.1:55000/ecard") as conn:
        row = conn.execute(
            "SELECT host(source_ip) FROM portal_auditevent WHERE action = 'staff.lock' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    assert row == ("127.0.0.2",)


def test_a_partner_api_call_through_nginx_is_signed_both_ways(cluster, tls):
    key_id = re.search(r"wechat_pay\s+key_id=(\S+)", (STATE / "log" / "seed.log").read_text()).group(1)
    pem = (STATE / "app" / "demo-partner-keys" / "wechat_pay.pem").read_bytes()
    client = PartnerClient(key_id=key_id, private_key=load_pem_private_key(pem, password=None), base_url=PORTAL)
    response = client.get("/api/v1/events?limit=5")
    assert response.status == 200, response.body
    assert response.signature_valid  # the portal's signature, with its key from GET /api/v1/keys
    assert len(response.json()["results"]) == 5


def test_the_workers_delivered_signed_webhooks_to_the_receiver(cluster, tls):
    events = STATE / "receiver" / "events.jsonl"
    deadline = time.monotonic() + 60
    while not (events.exists() and events.read_text().strip()):
        assert time.monotonic() < deadline, "no webhook reached the receiver"
        time.sleep(1)
    received = [json.loads(line) for line in events.read_text().splitlines()]
    keys = {k["key_id"]: k["public_key"] for k in httpx.get(f"{PORTAL}/api/v1/keys", verify=tls).json()["keys"]}
    for event in received[:20]:
        assert event["path"] in ("/sandbox/webhooks/wechat_pay", "/sandbox/webhooks/alipay")
        assert verify_webhook(keys, event["headers"], event["body"].encode()), event["headers"]


def test_prometheus_scrapes_every_target(cluster):
    deadline = time.monotonic() + 60
    while True:
        targets = httpx.get("http://127.0.0.1:59090/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        by_job: dict[str, list[dict]] = {}
        for target in targets:
            by_job.setdefault(target["labels"]["job"], []).append(target)
        others_up = all(t["health"] == "up" for job, ts in by_job.items() if job != "ecard-web" for t in ts)
        web_scraped = all(t["health"] != "unknown" for t in by_job.get("ecard-web", []))
        if others_up and web_scraped and len(by_job) == 5:
            break
        assert time.monotonic() < deadline, json.dumps(by_job, indent=1)
        time.sleep(1)
    assert sorted(by_job) == ["ecard-web", "etcd", "haproxy", "patroni", "prometheus"]
    assert len(by_job["patroni"]) == 2 and len(by_job["ecard-web"]) == 2
    for target in by_job["ecard-web"]:
        # Each web node is reached; its /metrics answers once the metrics endpoint exists (404 before).
        assert target["health"] == "up" or "404" in target["lastError"], target


def test_prometheus_sees_the_redis_master_with_its_replica_and_three_sentinels(cluster):
    """The web nodes' /metrics ask the Sentinels (EcardRedisWithoutReplica, EcardRedisSentinelsMissing)."""
    query = "http://127.0.0.1:59090/api/v1/query"
    deadline = time.monotonic() + 60
    while True:
        seen = {}
        for name in ("ecard_redis_replicas", "ecard_redis_sentinels"):
            result = httpx.get(query, params={"query": f"min({name})"}, timeout=5).json()["data"]["result"]
            seen[name] = float(result[0]["value"][1]) if result else None
        if seen == {"ecard_redis_replicas": 1.0, "ecard_redis_sentinels": 3.0}:
            break
        assert time.monotonic() < deadline, seen
        time.sleep(1)


def test_a_second_up_says_the_cluster_is_running(cluster):
    result = _cluster("up", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already running" in result.stdout
