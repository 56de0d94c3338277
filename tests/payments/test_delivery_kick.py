"""The delivery kick after commit (`deliver_event.delay`): a real worker without beat (no sweep)
delivers on that kick alone."""

import os

import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from payments import keys
from payments.models import OutboxEvent, OutboxState, Partner, PartnerKind
from tests.payments.test_delivery_worker import linked_card
from tests.workers import CeleryWorker, WebhookReceiver, database_url_for_current_connection, wait_until


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_without_a_sweep_delivers_on_the_kick_alone(make_citizen):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    call_command("rotate_portal_key", stdout=open(os.devnull, "w"))  # noqa: SIM115
    keys._forget_cached_key()
    env = {"DATABASE_URL": database_url_for_current_connection(), "REDIS_URL": settings.REDIS_URL,
           "ECARD_DELIVERY_SWEEP_SECONDS": "3600", "DB_CONN_MAX_AGE": "0"}
    receiver = WebhookReceiver()
    receiver.start()
    worker = CeleryWorker(env=env, name="kick", beat=False).start()
    try:
        partner = Partner.objects.create(code="wechat", name="WeChat Pay", kind=PartnerKind.WALLET,
                                         webhook_url=receiver.url)
        linked_card(make_citizen, partner)  # its linkage.created event, kicked on commit
        event = OutboxEvent.objects.get(type="linkage.created")
        wait_until(lambda: OutboxEvent.objects.filter(pk=event.pk, state=OutboxState.DELIVERED).exists(),
                   timeout=30, what="delivered on the kick")
        assert [r.headers["ecard-event-id"] for r in receiver.received] == [event.public_id]
    finally:
        worker.stop()
        worker.dump_log()
        receiver.stop()
