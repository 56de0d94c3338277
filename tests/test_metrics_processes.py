"""Metrics across real processes: two gunicorn workers counted together in one scrape
(prometheus-client's multiprocess mode), and a real Prometheus scraping the portal, loading the
alert rules, and firing the dead-event alert from the database's state."""

import json
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import transaction
from prometheus_client import multiprocess

from payments.delivery import outbox
from payments.models import OutboxEvent, OutboxState, Partner, PartnerKind
from testkit.metrics import get_text, prometheus_query, value, wait_for_http
from testkit.processes import (
    CeleryWorker,
    WebhookReceiver,
    database_url_for_current_connection,
    free_port,
    gunicorn_process,
    wait_until,
)

BASE_DIR = Path(__file__).resolve().parent.parent
PROMETHEUS = "/usr/bin/prometheus"
PROMETHEUS_PORT = 9190  # this worktree's test port for Prometheus
DURATION_COUNT = "ecard_http_request_duration_seconds_count"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web(tmp_path):
    """A real gunicorn with two single-threaded (sync) workers and its own metrics directory."""
    metrics_dir = tmp_path / "prometheus"
    port = free_port()
    server = gunicorn_process(
        database_url_for_current_connection(),
        port,
        2,
        GUNICORN_THREADS="1",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        DB_CONN_MAX_AGE="0",
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base_url + "/healthz")
        yield base_url, metrics_dir, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def _per_process_counts(metrics_dir: Path, route: str) -> dict[str, float]:
    """The request count for `route` in each process's own histogram file."""
    counts = {}
    for path in metrics_dir.glob("histogram_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        for family in multiprocess.MultiProcessCollector.merge([str(path)]):
            for sample in family.samples:
                if sample.name == DURATION_COUNT and sample.labels.get("route") == route:
                    counts[pid] = counts.get(pid, 0) + sample.value
    return counts


def test_one_scrape_adds_up_the_requests_of_both_gunicorn_workers(web):
    base_url, metrics_dir, _ = web
    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Concurrent requests on separate connections: a busy sync worker leaves the next to the other.
        for _ in range(10):
            list(pool.map(lambda _: get_text(base_url + "/readyz"), range(16)))
            sent += 16
            if len(_per_process_counts(metrics_dir, "readyz")) >= 2:
                break
    per_process = _per_process_counts(metrics_dir, "readyz")
    assert len(per_process) == 2, per_process  # both workers answered some
    assert sum(per_process.values()) == sent

    text = get_text(base_url + "/metrics")
    assert value(text, DURATION_COUNT, route="readyz", method="GET", status="200") == sent


def _dead_event(partner: Partner) -> OutboxEvent:
    with transaction.atomic():
        event = outbox.enqueue(partner=partner, type="linkage.created", obj={"id": "lnk_prom"})
    OutboxEvent.objects.filter(pk=event.pk).update(state=OutboxState.DEAD, next_attempt_at=None)
    return event


def _prometheus_config(directory: Path, target: str) -> Path:
    shutil.copy(BASE_DIR / "deploy" / "prometheus" / "alerts.yml", directory / "alerts.yml")
    config = directory / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["alerts.yml"],
                "scrape_configs": [{"job_name": "ecard-web", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    return config


def test_a_real_prometheus_scrapes_the_portal_and_fires_the_dead_event_alert(web):
    if not Path(PROMETHEUS).exists():
        pytest.skip(f"{PROMETHEUS} is missing (apt-get install prometheus)")
    base_url, _, _ = web
    partner = Partner.objects.create(
        code="wechat", name="WeChat", kind=PartnerKind.WALLET, webhook_url="http://x.invalid/"
    )
    _dead_event(partner)
    for _ in range(3):
        get_text(base_url + "/healthz")

    directory = Path(tempfile.mkdtemp(prefix="ecard-prometheus-"))
    config = _prometheus_config(directory, base_url.removeprefix("http://"))
    prometheus_url = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    log = open(directory / "prometheus.log", "wb")  # noqa: SIM115 (kept open by the child)
    server = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_for_http(prometheus_url + "/-/ready", timeout=60)

        def query_until(query: str, ok, timeout: float = 60) -> list[dict]:
            deadline = time.monotonic() + timeout
            while True:
                result = prometheus_query(prometheus_url, query)
                if ok(result):
                    return result
                if time.monotonic() > deadline:
                    raise AssertionError(f"{query}: {result}\n{(directory / 'prometheus.log').read_text()[-3000:]}")
                time.sleep(0.5)

        up = query_until('up{job="ecard-web"}', lambda r: r and r[0]["value"][1] == "1")
        assert up[0]["metric"]["instance"] == base_url.removeprefix("http://")
        dead = query_until('ecard_outbox_dead_events{partner="wechat"}', lambda r: bool(r))
        assert dead[0]["value"][1] == "1"
        healthz = query_until(f'sum({DURATION_COUNT}{{route="healthz",status="200"}})', lambda r: bool(r))
        assert float(healthz[0]["value"][1]) >= 3  # the first requests, and the fixture's wait
        alert = query_until('ALERTS{alertname="EcardOutboxDeadEvents",alertstate="firing"}', lambda r: bool(r))
        assert alert[0]["metric"]["partner"] == "wechat"
        rules = json.loads(get_text(prometheus_url + "/api/v1/rules"))["data"]["groups"]
        assert {rule["health"] for group in rules for rule in group["rules"]} == {"ok"}
        assert not prometheus_query(prometheus_url, 'ALERTS{alertname="EcardAuditChainLag"}')
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.worker
def test_a_worker_host_serves_its_delivery_counts_on_its_own_port(tmp_path, portal_key):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    receiver = WebhookReceiver().start()
    port = free_port()
    worker = CeleryWorker(
        env={
            "DATABASE_URL": database_url_for_current_connection(),
            "REDIS_URL": settings.REDIS_URL,
            "ECARD_WORKER_METRICS_PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "worker-metrics"),
            "ECARD_DELIVERY_SWEEP_SECONDS": "1",
        },
        name="exporter",
    ).start()
    try:
        partner = Partner.objects.create(
            code="wechat", name="WeChat", kind=PartnerKind.WALLET, webhook_url=receiver.url
        )
        with transaction.atomic():
            event = outbox.enqueue(partner=partner, type="linkage.created", obj={"id": "lnk_worker"})
        receiver.wait_for(lambda got: any(r.headers.get("ecard-event-id") == event.public_id for r in got))
        url = f"http://127.0.0.1:{port}/metrics"
        wait_until(
            lambda: value(get_text(url), "ecard_webhook_deliveries_total", result="delivered") == 1,
            timeout=20,
            what="the worker's delivered count",
        )
        text = get_text(url)
        assert value(text, "ecard_webhook_deliveries_total", result="failed") == 0
        assert "ecard_outbox_dead_events" not in text  # the business figures are the web's, not counted twice
    finally:
        worker.stop()
        receiver.stop()
