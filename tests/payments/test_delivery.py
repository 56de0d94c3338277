"""Claiming, leasing, signing, retrying and replaying outbox deliveries, against a real loopback receiver."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from payments import keys, signing
from payments.delivery import services as delivery
from payments.delivery.outbox import enqueue
from payments.models import DeliveryAttempt, OutboxEvent, OutboxState, Partner, PartnerKind, PortalKey, SandboxReceipt
from portal.actors import Actor
from portal.models import AuditEvent
from testkit.processes import WebhookReceiver, free_port

CONTRACT_SCHEDULE = [15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600]


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


def make_partner(code: str = "wechat", url: str = "", **extra) -> Partner:
    return Partner.objects.create(code=code, name=code, kind=PartnerKind.WALLET, webhook_url=url, **extra)


def make_event(partner: Partner, object_id: str = "lnk_test", type: str = "certificate.suspended") -> OutboxEvent:
    with transaction.atomic():
        return enqueue(partner=partner, type=type, obj={"id": object_id, "citizen": {"name_masked": "张*明"}})


def test_due_event_is_posted_with_its_exact_body_and_a_webhook_signature(portal_key, receiver):
    event = make_event(make_partner(url=receiver.url))
    assert delivery.deliver_one(event.pk) is True
    [got] = receiver.received
    assert got.body == event.body.encode()
    assert got.headers["content-type"] == "application/json"
    assert got.headers["ecard-event-id"] == event.public_id
    assert got.headers["ecard-event-type"] == "certificate.suspended"
    assert got.headers["ecard-key-id"] == portal_key.key_id
    message = signing.webhook_string_to_sign(
        event.public_id, got.headers["ecard-timestamp"], got.headers["ecard-nonce"], got.body
    )
    assert signing.verify(portal_key.public_key, message, got.headers["ecard-signature"])
    event.refresh_from_db()
    assert (event.state, event.attempts, event.last_status) == (OutboxState.DELIVERED, 1, 204)
    [attempt] = DeliveryAttempt.objects.filter(event=event)
    assert attempt.succeeded and attempt.number == 1 and attempt.status_code == 204 and attempt.latency_ms is not None


def test_each_attempt_is_signed_afresh(portal_key, receiver):
    receiver.status = 503
    event = make_event(make_partner(url=receiver.url))
    delivery.deliver_one(event.pk)
    OutboxEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    delivery.deliver_one(event.pk)
    first, second = receiver.received
    assert first.body == second.body
    assert first.headers["ecard-nonce"] != second.headers["ecard-nonce"]


def test_failed_attempt_is_retried_15_seconds_later_with_a_short_error_and_no_personal_data(portal_key, receiver):
    receiver.status = 500
    event = make_event(make_partner(url=receiver.url))
    before = timezone.now()
    delivery.deliver_one(event.pk)
    event.refresh_from_db()
    assert event.state == OutboxState.PENDING and event.attempts == 1 and event.last_status == 500
    assert before + timedelta(seconds=15) <= event.next_attempt_at <= timezone.now() + timedelta(seconds=15)
    attempt = DeliveryAttempt.objects.get(event=event)
    assert attempt.error == "HTTP 500" and not attempt.succeeded
    assert "张" not in attempt.error + event.last_error


def test_refused_connection_is_recorded_and_retried(portal_key):
    event = make_event(make_partner(url=f"http://127.0.0.1:{free_port()}/hook"))
    delivery.deliver_one(event.pk)
    event.refresh_from_db()
    assert event.state == OutboxState.PENDING and event.attempts == 1
    assert event.last_status is None and event.last_error == "connection failed"


def test_receiver_slower_than_the_timeout_counts_as_a_failure(portal_key, receiver, settings):
    settings.ECARD_WEBHOOK_TIMEOUT_SECONDS = 0.3
    release = receiver.hold_next()
    event = make_event(make_partner(url=receiver.url))
    try:
        delivery.deliver_one(event.pk)
    finally:
        release.set()
    event.refresh_from_db()
    assert event.last_error == "timeout" and event.state == OutboxState.PENDING


def test_retry_delays_follow_the_contract_schedule_then_the_event_is_dead():
    assert [delivery.retry_delay(n).total_seconds() for n in range(1, 16)] == CONTRACT_SCHEDULE
    assert delivery.retry_delay(16) is None


@pytest.mark.parametrize("attempts_before", [0, 3, 9, 14])
def test_each_failure_schedules_the_next_attempt_by_the_schedule(portal_key, receiver, attempts_before):
    receiver.status = 400
    event = make_event(make_partner(url=receiver.url))
    OutboxEvent.objects.filter(pk=event.pk).update(attempts=attempts_before)
    start = timezone.now()
    delivery.deliver_one(event.pk)
    event.refresh_from_db()
    expected = timedelta(seconds=CONTRACT_SCHEDULE[attempts_before])
    assert event.attempts == attempts_before + 1
    assert start + expected <= event.next_attempt_at <= timezone.now() + expected


def test_sixteenth_failed_attempt_marks_the_event_dead(portal_key, receiver):
    receiver.status = 500
    event = make_event(make_partner(url=receiver.url))
    OutboxEvent.objects.filter(pk=event.pk).update(attempts=15)
    delivery.deliver_one(event.pk)
    event.refresh_from_db()
    assert event.state == OutboxState.DEAD and event.attempts == 16 and event.next_attempt_at is None
    assert DeliveryAttempt.objects.get(event=event).number == 16
    # A dead event is never claimed again.
    assert delivery.deliver_due() == 0


def test_claimed_event_is_leased_and_only_retaken_after_the_lease(portal_key, settings):
    settings.ECARD_DELIVERY_LEASE_SECONDS = 30
    event = make_event(make_partner(url="http://127.0.0.1:9/hook"))
    [claimed] = delivery.claim_due(limit=10)
    assert claimed.id == event.pk
    event.refresh_from_db()
    assert event.next_attempt_at > timezone.now() + timedelta(seconds=25)
    assert delivery.claim_due(limit=10) == []
    # The worker died: once the lease has run out, the event is due again.
    OutboxEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert [c.id for c in delivery.claim_due(limit=10)] == [event.pk]


def test_event_not_yet_due_is_not_delivered(portal_key, receiver):
    event = make_event(make_partner(url=receiver.url))
    OutboxEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    assert delivery.deliver_one(event.pk) is False
    assert delivery.deliver_due() == 0
    assert receiver.received == []


def test_paused_partner_and_partner_without_webhook_url_are_skipped(portal_key, receiver):
    paused = make_event(make_partner("paused", url=receiver.url, deliveries_paused=True))
    no_url = make_event(make_partner("nourl", url=""))
    assert delivery.deliver_due() == 0
    assert delivery.deliver_one(paused.pk) is False and delivery.deliver_one(no_url.pk) is False
    Partner.objects.filter(code="paused").update(deliveries_paused=False)
    assert delivery.deliver_due() == 1
    assert [r.headers["ecard-event-id"] for r in receiver.received] == [paused.public_id]


def test_sweep_delivers_every_due_event_in_batches(portal_key, receiver, settings):
    settings.ECARD_DELIVERY_BATCH_SIZE = 50
    partner = make_partner(url=receiver.url)
    events = [make_event(partner, object_id=f"lnk_{i}") for i in range(7)]
    settings.ECARD_DELIVERY_BATCH_SIZE = 3  # smaller than the backlog, more than the last batch
    assert delivery.deliver_due() == 7
    assert sorted(r.headers["ecard-event-id"] for r in receiver.received) == sorted(e.public_id for e in events)
    assert OutboxEvent.objects.filter(state=OutboxState.DELIVERED).count() == 7


def test_replay_makes_a_dead_event_pending_and_due_now_and_is_audited(portal_key, receiver):
    event = make_event(make_partner(url=receiver.url))
    OutboxEvent.objects.filter(pk=event.pk).update(state=OutboxState.DEAD, attempts=16, next_attempt_at=None)
    delivery.outbox_replay(actor=Actor.system("operator"), event=event)
    event.refresh_from_db()
    assert event.state == OutboxState.PENDING and event.attempts == 0 and event.next_attempt_at <= timezone.now()
    audit = AuditEvent.objects.get(action="outbox_event.replay")
    assert audit.object_id == event.public_id and audit.before["state"] == "dead"
    assert delivery.deliver_one(event.pk) is True
    event.refresh_from_db()
    assert event.state == OutboxState.DELIVERED


def test_replay_of_an_event_that_is_not_dead_is_refused(portal_key):
    from portal.errors import DomainError

    event = make_event(make_partner(url="http://127.0.0.1:9/"))
    with pytest.raises(DomainError) as info:
        delivery.outbox_replay(actor=Actor.system("operator"), event=event)
    assert info.value.code == "invalid_state"


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_take_the_same_event():
    keys._forget_cached_key()
    partner = make_partner(url="http://127.0.0.1:9/")
    ids = {make_event(partner, object_id=f"lnk_{i}").pk for i in range(20)}
    results: list[list[int]] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        try:
            results.append([c.id for c in delivery.claim_due(limit=8)])
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [i for r in results for i in r]
    assert len(taken) == len(set(taken)) == 20
    assert set(taken) == ids


def test_sandbox_receiver_stores_a_valid_receipt_for_a_signed_webhook(portal_key, client):
    event = make_event(make_partner(url="http://127.0.0.1:9/"))
    key = keys.current_signing_key()
    body = event.body.encode()
    headers = signing.webhook_headers(
        key_id=key.key_id, private_key=key.private_key, event_id=event.public_id, body=body, timestamp=1700000000
    ).as_dict()
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    response = client.post(
        "/sandbox/webhooks/wechat",
        data=body,
        content_type="application/json",
        HTTP_ECARD_EVENT_ID=event.public_id,
        HTTP_ECARD_EVENT_TYPE=event.type,
        **extra,
    )
    assert response.status_code == 204
    receipt = SandboxReceipt.objects.get()
    assert receipt.signature_valid and receipt.partner_code == "wechat"
    assert receipt.event_id == event.public_id and json.loads(receipt.body)["id"] == event.public_id


def test_sandbox_receiver_marks_a_tampered_or_unsigned_webhook_invalid(portal_key, client):
    key = keys.current_signing_key()
    headers = signing.webhook_headers(
        key_id=key.key_id, private_key=key.private_key, event_id="evt_1", body=b'{"a":1}', timestamp=1700000000
    ).as_dict()
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    tampered = client.post(
        "/sandbox/webhooks/alipay",
        data=b'{"a":2}',
        content_type="application/json",
        HTTP_ECARD_EVENT_ID="evt_1",
        **extra,
    )
    unsigned = client.post("/sandbox/webhooks/alipay", data=b"{}", content_type="application/json")
    assert tampered.status_code == unsigned.status_code == 204
    assert list(SandboxReceipt.objects.values_list("signature_valid", flat=True)) == [False, False]
    assert PortalKey.objects.count() == 1
