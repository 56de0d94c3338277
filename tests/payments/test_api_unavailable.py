"""A database or Redis that cannot be reached for a moment (a failover, a restart) answers a signed
503 `service_unavailable` with `Retry-After`, and nothing is stored for the Idempotency-Key: the
partner's retry with the same key, once the outage is over, executes once (PARTNER_API.md: "5xx
are not stored, so such a request may be retried with the same key").

The outages are real: the Django connection's backend ended from another session
(`pg_terminate_backend`), the database made read-only as a demoted leader is, a throwaway
redis-server stopped and started again."""

import logging

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.signals import request_finished
from django.db import connection
from django.test import override_settings
from prometheus_client import REGISTRY

from payments import keys
from payments.models import IdempotencyRecord, WalletLinkage
from testkit.api import idem_key, link_payload, make_partner_client, problem
from testkit.database import other_connection, terminate_backend, terminate_other_backends
from testkit.metrics import wait_for_http
from testkit.partner_client import PartnerClient
from testkit.processes import RedisServer, database_url_for_current_connection, free_port, gunicorn_process

pytestmark = pytest.mark.django_db(transaction=True)

TARGET = "/api/v1/linkages"


@pytest.fixture
def wallet(portal_key, regions, fresh_cache):
    return make_partner_client()


@pytest.fixture(autouse=True)
def _fresh_connection_after():
    yield
    connection.close()  # the test client leaves a broken connection open (Django closes it after a request)


def _warm(wallet) -> None:
    """Two requests: the portal's keys fetched, the partner's key row cached and trusted, the
    signing key cached, so that the next request's first query is the one the outage breaks."""
    for _ in range(2):
        assert wallet.get(TARGET).status == 200


def _backend_errors(backend: str) -> float:
    return REGISTRY.get_sample_value("ecard_backend_errors_total", {"backend": backend}) or 0.0


def _unavailable(response, caplog, exception: str) -> None:
    """A signed 503 problem with Retry-After, and its one warning line naming the exception's class only."""
    body = problem(response, 503, "service_unavailable")
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    assert body["title"] == "Service unavailable"
    assert "Idempotent-Replayed" not in response.headers
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname) for r in lines] == [("portal.unavailable", "WARNING")], [
        r.getMessage() for r in lines
    ]
    assert exception in lines[0].getMessage()
    assert not lines[0].exc_info


def test_a_keyed_post_while_the_database_is_gone_answers_a_signed_503_and_its_retry_executes_once(
    wallet, make_citizen, caplog
):
    citizen = make_citizen(with_card=True)
    payload, key = link_payload(citizen), idem_key()
    _warm(wallet)
    errors = _backend_errors("database")
    terminate_backend()
    with caplog.at_level(logging.INFO):
        down = wallet.post(TARGET, payload, idempotency_key=key)
    _unavailable(down, caplog, "OperationalError")
    message = caplog.records[-1].getMessage()
    assert citizen.name not in message and citizen.id_number not in message
    assert _backend_errors("database") == errors + 1
    assert not IdempotencyRecord.objects.filter(key=key).exists()
    assert not WalletLinkage.objects.exists()

    again = wallet.post(TARGET, payload, idempotency_key=key)
    assert again.status == 201, again.body
    assert "Idempotent-Replayed" not in again.headers
    replay = wallet.post(TARGET, payload, idempotency_key=key)
    assert (replay.status, replay.body, replay.headers["Idempotent-Replayed"]) == (201, again.body, "true")
    assert WalletLinkage.objects.count() == 1


def test_a_process_that_never_read_the_signing_key_answers_the_503_unsigned(wallet, caplog):
    """Signing needs the key, and the key is in the database: a process that has not read it yet
    (keys.current_signing_key keeps the last one read otherwise) can only say it is unavailable."""
    _warm(wallet)
    keys._forget_cached_key()
    terminate_backend()
    with caplog.at_level(logging.INFO):
        down = wallet.get(TARGET)
    assert (down.status, down.code, down.headers["Retry-After"]) == (503, "service_unavailable", "1")
    assert not down.signature_valid and "Ecard-Signature" not in down.headers
    assert [r.name for r in caplog.records if r.levelno >= logging.WARNING] == ["portal.unavailable"]
    request_finished.send(sender=None)  # the end of a request, which the test client leaves out
    assert wallet.get(TARGET).status == 200


def test_a_read_only_database_answers_503_and_its_connection_is_not_kept(wallet, make_citizen, caplog):
    """A leader demoted to standby still answers, but refuses writes: the connection is closed so
    that the next request connects afresh (to the new leader) instead of being refused for as long
    as CONN_MAX_AGE."""
    payload, key = link_payload(make_citizen(with_card=True)), idem_key()
    _warm(wallet)
    name = connection.settings_dict["NAME"]
    with other_connection() as other:
        other.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        try:
            connection.close()  # the next request's connection starts read-only
            with caplog.at_level(logging.INFO):
                down = wallet.post(TARGET, payload, idempotency_key=key)
        finally:
            other.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    _unavailable(down, caplog, "InternalError from psycopg.errors.ReadOnlySqlTransaction")
    assert connection.connection is None, "the read-only connection was closed"
    again = wallet.post(TARGET, payload, idempotency_key=key)
    assert again.status == 201, again.body
    assert WalletLinkage.objects.count() == 1


@pytest.fixture
def own_redis():
    """The cache on a throwaway redis-server (the default cache's client is made afresh for it)."""
    server = RedisServer().start()
    caches = {"default": {**settings.CACHES["default"], "LOCATION": [server.url]}}
    try:
        with override_settings(CACHES=caches):
            yield server
    finally:
        server.stop()
        cache.close()


def test_a_keyed_post_while_redis_restarts_answers_a_signed_503_and_its_retry_executes_once(
    wallet, make_citizen, own_redis, caplog
):
    payload, key = link_payload(make_citizen(with_card=True)), idem_key()
    _warm(wallet)
    errors = _backend_errors("redis")
    own_redis.stop()
    with caplog.at_level(logging.INFO):
        down = wallet.post(TARGET, payload, idempotency_key=key)
    _unavailable(down, caplog, "ConnectionError")
    assert _backend_errors("redis") == errors + 1
    assert not IdempotencyRecord.objects.filter(key=key).exists()

    own_redis.start()  # the same port, empty: a restarted Redis
    again = wallet.post(TARGET, payload, idempotency_key=key)
    assert again.status == 201, again.body
    assert "Idempotent-Replayed" not in again.headers
    assert WalletLinkage.objects.count() == 1


def test_a_gunicorn_worker_answers_503_once_and_connects_afresh_for_the_next_request(portal_key, tmp_path):
    """The real server, one worker of one thread (so every request uses the same connection), and
    CONN_MAX_AGE as in production: after its backend is ended, one request is answered 503 and
    Django's end of request closes the broken connection; the next request connects afresh."""
    log = tmp_path / "gunicorn.log"
    port = free_port()
    server = gunicorn_process(
        database_url_for_current_connection(),
        port,
        1,
        stderr_path=str(log),
        GUNICORN_THREADS="1",
        DB_CONN_MAX_AGE="600",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="plain",
    )
    client = PartnerClient(key_id="", private_key=None, base_url=f"http://127.0.0.1:{port}")  # type: ignore[arg-type]
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        client.fetch_portal_keys()  # the worker's connection made, the signing key cached
        assert terminate_other_backends() >= 1
        down = client.request("GET", "/api/v1/keys", sign=False)
        assert (down.status, down.code, down.headers["Retry-After"]) == (503, "service_unavailable", "1")
        assert down.signature_valid
        assert client.request("GET", "/api/v1/keys", sign=False).status == 200
        assert client.request("GET", "/api/v1/keys", sign=False).status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert text.count("database unreachable (OperationalError") == 1, text
    assert "Traceback" not in text and "Service Unavailable" not in text, text
