"""A message the worker cannot decode is logged and dropped; the worker goes on (portal/broker.py)."""

import time

import pytest
import redis
from django.conf import settings

from portal.celery import app
from testkit.processes import CeleryWorker, database_url_for_current_connection

pytestmark = pytest.mark.worker

_ENVELOPE = (
    b'{"body": "%s", "content-type": "application/json", "content-encoding": "utf-8", "headers": {},'
    b' "properties": {"delivery_tag": "x", "delivery_info": {"exchange": "", "routing_key": "celery"},'
    b' "body_encoding": "base64"}}'
)
# Envelopes kombu cannot read: our transport drops them.
MALFORMED = [
    b"not json at all",  # kombu issue 1551's case: a half-written message
    b'{"a": 1}',  # JSON, but no envelope
    b"[1, 2]",
    _ENVELOPE % b"garbage",  # a body that is not base64
]
# An envelope that reads, holding no task: Celery's own consumer logs and deletes it.
NOT_A_TASK = _ENVELOPE % b"e30="


def test_a_worker_drops_messages_it_cannot_decode_and_runs_the_next_task(transactional_db):
    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.flushdb()
    worker = CeleryWorker(
        env={"DATABASE_URL": database_url_for_current_connection(), "REDIS_URL": settings.REDIS_URL},
        name="decode",
        beat=False,
        pool="prefork",
        concurrency=1,
    ).start()
    try:
        for raw in [*MALFORMED, NOT_A_TASK]:
            broker.lpush("celery", raw)
        app.send_task("portal.tasks.chain_audit_events")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "succeeded" not in worker.log():
            assert worker.proc.poll() is None, worker.log()
            time.sleep(0.1)
        log = worker.log()
        assert "Task portal.tasks.chain_audit_events" in log and "succeeded" in log, log
        assert log.count("dropped a message that cannot be decoded") == len(MALFORMED), log
        assert "Received and deleted unknown message" in log
        assert "Unrecoverable error" not in log
        assert worker.proc.poll() is None
        assert broker.llen("celery") == 0
    finally:
        worker.stop()
