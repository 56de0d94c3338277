"""JSON log lines and the request id: kept from the client when well formed, returned in the
response, on the log lines of the request (a real gunicorn), carried into the Celery task the
request causes (a real worker's log) and sent with the webhook it produces (a real receiver)."""

import json
import logging
import re
import sys

import pytest
import redis
from django.conf import settings

from payments import signing
from payments.models import OutboxEvent
from portal.observability.logjson import JsonFormatter
from portal.observability.requestid import RequestIdFilter
from testkit.api import idem_key, link_payload, make_partner_client, partner_of
from testkit.metrics import get_text, wait_for_http
from testkit.processes import (
    CeleryWorker,
    WebhookReceiver,
    database_url_for_current_connection,
    free_port,
    gunicorn_process,
    wait_until,
)

NEW_ID = re.compile(r"[0-9a-f]{32}")


def _record(**extra) -> logging.LogRecord:
    record = logging.LogRecord("payments.delivery", logging.WARNING, __file__, 1, "event %s is dead", ("evt_1",), None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_the_fields_and_nothing_else_of_the_record():
    record = _record(request=object(), citizen_name="张三明")  # extras are never written
    RequestIdFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message", "request_id"}
    assert entry["message"] == "event evt_1 is dead"
    assert entry["level"] == "WARNING" and entry["logger"] == "payments.delivery"
    assert entry["request_id"] == "-"  # outside a request or task
    assert entry["time"].endswith("+00:00")
    assert "张三明" not in line


def test_a_json_line_keeps_the_traceback_on_one_line():
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: broken" in entry["exception"]


@pytest.mark.parametrize(
    "given,kept",
    [
        ("3f2c9a1e-7b4d-4c1a-9e8f-0a1b2c3d4e5f", True),
        ("edge.lb-01:req_0001", True),
        ("short", False),
        ("x" * 65, False),
        ("id with spaces", False),
        ("abcdefgh\nINFO forged line", False),
        ('abcdefgh","level":"ERROR', False),
    ],
)
def test_the_request_id_is_kept_only_when_well_formed(client, given, kept):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=given)
    returned = response["X-Request-Id"]
    if kept:
        assert returned == given
    else:
        assert NEW_ID.fullmatch(returned), returned


def test_each_request_without_an_id_gets_its_own(client):
    first, second = client.get("/healthz")["X-Request-Id"], client.get("/healthz")["X-Request-Id"]
    assert NEW_ID.fullmatch(first) and NEW_ID.fullmatch(second) and first != second


@pytest.mark.django_db(transaction=True)
def test_a_gunicorn_request_logs_json_lines_with_its_id_and_no_query_string(tmp_path):
    port = free_port()
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    server = gunicorn_process(
        database_url_for_current_connection(),
        port,
        1,
        stderr_path=str(error_log),
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        GUNICORN_ACCESS_LOG=str(access_log),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        try:
            get_text(
                f"http://127.0.0.1:{port}/no-such-page?id_number=11010119900307851X",
                headers={"X-Request-Id": "trace-from-the-edge-0001"},
            )
        except OSError:
            pass  # 404
        wait_until(lambda: "no-such-page" in access_log.read_text(), timeout=10, what="the access line")
    finally:
        server.terminate()
        server.wait(timeout=30)
    app_lines = [json.loads(line) for line in error_log.read_text().splitlines() if line.startswith("{")]
    not_found = [e for e in app_lines if e["message"].startswith("Not Found: /no-such-page")]
    assert not_found and not_found[0]["request_id"] == "trace-from-the-edge-0001"
    assert not_found[0]["logger"] == "django.request" and not_found[0]["level"] == "WARNING"
    access = [json.loads(line) for line in access_log.read_text().splitlines()]
    mine = [e for e in access if e["path"] == "/no-such-page"]
    assert mine[0]["request_id"] == "trace-from-the-edge-0001"
    assert mine[0]["status"] == 404 and mine[0]["method"] == "GET"
    assert "11010119900307851X" not in access_log.read_text() + error_log.read_text()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_request_id_follows_a_partner_request_into_the_task_and_the_webhook(portal_key, make_citizen, client):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # no sweep mark or message left by an earlier test
    receiver = WebhookReceiver().start()
    worker = CeleryWorker(
        env={
            "DATABASE_URL": database_url_for_current_connection(),
            "REDIS_URL": settings.REDIS_URL,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "DB_CONN_MAX_AGE": "0",
        },
        name="reqid",
        beat=False,  # only the task the request queues can deliver
    ).start()
    try:
        partner_client = make_partner_client()
        partner = partner_of(partner_client)
        partner.webhook_url = receiver.url
        partner.save(update_fields=["webhook_url"])
        citizen = make_citizen(with_card=True)
        request_id = "partner-trace-4242-abcd"

        response = partner_client.post(
            "/api/v1/linkages",
            link_payload(citizen),
            idempotency_key=idem_key(),
            extra_headers={"X-Request-Id": request_id},
        )
        assert response.status == 201, response.body
        assert response.headers["X-Request-Id"] == request_id
        event = OutboxEvent.objects.get(partner=partner, type="linkage.created")
        assert event.request_id == request_id

        got = receiver.wait_for(lambda got: any(r.headers.get("ecard-event-id") == event.public_id for r in got))
        webhook = next(r for r in got if r.headers["ecard-event-id"] == event.public_id)
        assert webhook.headers["x-request-id"] == request_id
        # The id is outside the signature: the webhook still verifies against the published key.
        published = {k["key_id"]: k["public_key"] for k in client.get("/api/v1/keys").json()["keys"]}
        message = signing.webhook_string_to_sign(
            event.public_id, webhook.headers["ecard-timestamp"], webhook.headers["ecard-nonce"], webhook.body
        )
        assert signing.verify(published[webhook.headers["ecard-key-id"]], message, webhook.headers["ecard-signature"])

        def task_lines() -> list[dict]:
            lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
            return [e for e in lines if e["request_id"] == request_id and "deliver_due_events" in e["message"]]

        wait_until(lambda: any("succeeded" in e["message"] for e in task_lines()), timeout=20, what="the task's line")
        assert citizen.name not in worker.log()
    finally:
        worker.stop()
        receiver.stop()
