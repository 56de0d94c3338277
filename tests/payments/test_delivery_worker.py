"""End to end: a clerk-style service call, a real Celery worker subprocess, real Redis, a loopback receiver.

Nothing here runs eagerly: the worker is `.venv/bin/celery -A portal worker`
with an embedded beat sweeping every second, against the test database.
"""

import os

import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from insurance import services as insurance_services
from payments import keys, signing
from payments.models import DeliveryAttempt, OutboxEvent, OutboxState, Partner, PartnerKind
from portal.actors import Actor
from testkit.delivery import linked_card
from testkit.processes import CeleryWorker, WebhookReceiver, database_url_for_current_connection, free_port, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker_env(transactional_db):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # our own Redis db: no stale tasks from earlier runs
    call_command("rotate_portal_key", stdout=open(os.devnull, "w"))  # noqa: SIM115
    keys._forget_cached_key()
    return {
        "DATABASE_URL": database_url_for_current_connection(),
        "REDIS_URL": settings.REDIS_URL,
        "ECARD_DELIVERY_SWEEP_SECONDS": "1",
        "ECARD_DELIVERY_RETRY_SCHEDULE": "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
        "ECARD_DELIVERY_LEASE_SECONDS": "3",
        "ECARD_WEBHOOK_TIMEOUT_SECONDS": "10",
        "DB_CONN_MAX_AGE": "0",
    }


@pytest.fixture
def workers(worker_env):
    started: list[CeleryWorker] = []

    def start(name: str = "w") -> CeleryWorker:
        worker = CeleryWorker(env=worker_env, name=name)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
        worker.dump_log()  # pytest shows it only when the test failed


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.stop()


def events_for(receiver: WebhookReceiver, event_id: str):
    return [r for r in receiver.received if r.headers.get("ecard-event-id") == event_id]


def test_clerk_suspension_reaches_the_partner_signed_with_a_published_key(workers, receiver, make_citizen, client):
    receiver.start()
    workers()
    partner = Partner.objects.create(
        code="wechat", name="WeChat Pay", kind=PartnerKind.WALLET, webhook_url=receiver.url
    )
    certificate = linked_card(make_citizen, partner)
    insurance_services.certificate_suspend(actor=Actor.system("clerk"), certificate=certificate, reason="lost phone")
    suspended = OutboxEvent.objects.get(type="certificate.suspended")

    receiver.wait_for(lambda got: any(r.headers["ecard-event-id"] == suspended.public_id for r in got), timeout=20)
    published = {k["key_id"]: k["public_key"] for k in client.get("/api/v1/keys").json()["keys"]}
    assert {r.headers["ecard-event-type"] for r in receiver.received} == {"linkage.created", "certificate.suspended"}
    for got in receiver.received:
        event = OutboxEvent.objects.get(public_id=got.headers["ecard-event-id"])
        assert got.body == event.body.encode()
        message = signing.webhook_string_to_sign(
            event.public_id, got.headers["ecard-timestamp"], got.headers["ecard-nonce"], got.body
        )
        assert signing.verify(published[got.headers["ecard-key-id"]], message, got.headers["ecard-signature"])
    wait_until(lambda: OutboxEvent.objects.filter(state=OutboxState.DELIVERED).count() == 2, what="both delivered")


def test_events_sent_while_the_receiver_is_down_are_delivered_once_it_is_up(workers, receiver, make_citizen):
    workers()
    partner = Partner.objects.create(code="alipay", name="Alipay", kind=PartnerKind.WALLET, webhook_url=receiver.url)
    certificate = linked_card(make_citizen, partner)
    insurance_services.certificate_suspend(actor=Actor.system("clerk"), certificate=certificate, reason="r")
    insurance_services.certificate_reinstate(actor=Actor.system("clerk"), certificate=certificate, reason="r")
    ids = set(OutboxEvent.objects.values_list("public_id", flat=True))
    assert len(ids) == 3
    wait_until(
        lambda: DeliveryAttempt.objects.filter(error="connection failed").count() >= 6,
        timeout=30,
        what="failed attempts while the receiver is down",
    )
    assert not OutboxEvent.objects.filter(state=OutboxState.DELIVERED).exists()

    receiver.start()
    wait_until(
        lambda: OutboxEvent.objects.filter(state=OutboxState.DELIVERED).count() == 3,
        timeout=30,
        what="all delivered after the receiver came up",
    )
    assert {r.headers["ecard-event-id"] for r in receiver.received} == ids
    for event in OutboxEvent.objects.all():
        attempts = list(event.delivery_attempts.order_by("number"))
        assert attempts[-1].succeeded and all(not a.succeeded for a in attempts[:-1])
        assert event.attempts == len(attempts) >= 2


def test_event_held_by_a_killed_worker_is_delivered_by_another_after_the_lease(workers, receiver, make_citizen):
    receiver.start()
    partner = Partner.objects.create(
        code="wechat", name="WeChat Pay", kind=PartnerKind.WALLET, webhook_url=receiver.url
    )
    certificate = linked_card(make_citizen, partner)
    first = workers("first")
    receiver.wait_for(lambda got: len(got) == 1, timeout=20)  # linkage.created, delivered
    wait_until(lambda: OutboxEvent.objects.filter(state=OutboxState.DELIVERED).count() == 1, what="linkage.created")

    release = receiver.hold_next()
    insurance_services.certificate_suspend(actor=Actor.system("clerk"), certificate=certificate, reason="r")
    suspended = OutboxEvent.objects.get(type="certificate.suspended")
    receiver.wait_for(lambda got: len(events_for(receiver, suspended.public_id)) == 1, timeout=20)
    first.kill()  # while the receiver still holds the request
    release.set()
    suspended.refresh_from_db()
    assert suspended.state == OutboxState.PENDING and suspended.attempts == 0

    workers("second")
    wait_until(
        lambda: OutboxEvent.objects.filter(pk=suspended.pk, state=OutboxState.DELIVERED).exists(),
        timeout=30,
        what="the sweep of the second worker to deliver after the lease",
    )
    assert len(events_for(receiver, suspended.public_id)) == 2  # at least once: the partner deduplicates
    assert DeliveryAttempt.objects.filter(event=suspended, succeeded=True).count() == 1


def test_worker_helper_reports_a_worker_that_cannot_start(worker_env):
    port = free_port()  # nothing listens: the broker is unreachable
    env = {**worker_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    worker = CeleryWorker(env=env, name="broken", beat=False)
    with pytest.raises(RuntimeError):
        worker.start(timeout=4)
    worker.stop()
