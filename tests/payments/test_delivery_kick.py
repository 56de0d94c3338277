"""The delivery kick after commit (`payments.delivery.kick_sweep`): a real worker without beat (no
periodic sweep) delivers on that kick alone, and commits made while a sweep is queued queue no other."""

import os

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command

from payments import keys
from payments.delivery import services as delivery
from payments.linkages.services import linkage_create
from payments.models import OutboxEvent, OutboxState, Partner, PartnerKind
from portal.actors import Actor
from testkit.delivery import linked_card
from testkit.processes import CeleryWorker, WebhookReceiver, database_url_for_current_connection, wait_until


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_without_a_sweep_delivers_on_the_kick_alone(make_citizen):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    call_command("rotate_portal_key", stdout=open(os.devnull, "w"))  # noqa: SIM115
    keys._forget_cached_key()
    env = {
        "DATABASE_URL": database_url_for_current_connection(),
        "REDIS_URL": settings.REDIS_URL,
        "ECARD_DELIVERY_SWEEP_SECONDS": "3600",
        "DB_CONN_MAX_AGE": "0",
    }
    receiver = WebhookReceiver()
    receiver.start()
    worker = CeleryWorker(env=env, name="kick", beat=False).start()
    try:
        partner = Partner.objects.create(
            code="wechat", name="WeChat Pay", kind=PartnerKind.WALLET, webhook_url=receiver.url
        )
        linked_card(make_citizen, partner)  # its linkage.created event, kicked on commit
        event = OutboxEvent.objects.get(type="linkage.created")
        wait_until(
            lambda: OutboxEvent.objects.filter(pk=event.pk, state=OutboxState.DELIVERED).exists(),
            timeout=30,
            what="delivered on the kick",
        )
        assert [r.headers["ecard-event-id"] for r in receiver.received] == [event.public_id]
    finally:
        worker.stop()
        worker.dump_log()
        receiver.stop()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_commits_while_a_sweep_is_queued_queue_no_other_and_that_sweep_delivers_them_all(make_citizen):
    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.flushdb()
    call_command("rotate_portal_key", stdout=open(os.devnull, "w"))  # noqa: SIM115
    keys._forget_cached_key()
    receiver = WebhookReceiver()
    receiver.start()
    worker = None
    try:
        partner = Partner.objects.create(
            code="wechat", name="WeChat Pay", kind=PartnerKind.WALLET, webhook_url=receiver.url
        )
        for number in range(3):  # three transactions, each with its linkage.created event
            _link(make_citizen, partner, number)
        assert OutboxEvent.objects.filter(type="linkage.created").count() == 3
        assert broker.llen("deliveries") == 1  # the first commit queued a sweep; the other two found it queued
        env = {
            "DATABASE_URL": database_url_for_current_connection(),
            "REDIS_URL": settings.REDIS_URL,
            "ECARD_DELIVERY_SWEEP_SECONDS": "3600",
            "DB_CONN_MAX_AGE": "0",
        }
        worker = CeleryWorker(env=env, name="kick-queued", beat=False).start()
        wait_until(
            lambda: OutboxEvent.objects.filter(state=OutboxState.DELIVERED).count() == 3,
            timeout=30,
            what="all three delivered by the one queued sweep",
        )
        # That sweep cleared its mark as it started: the next commit queues a sweep of its own.
        wait_until(
            lambda: not broker.exists(cache.make_key(delivery.SWEEP_QUEUED_KEY)),
            timeout=10,
            what="the queued mark cleared",
        )
        _link(make_citizen, partner, 3)
        wait_until(
            lambda: OutboxEvent.objects.filter(state=OutboxState.DELIVERED).count() == 4,
            timeout=30,
            what="a later event delivered on its own kick",
        )
        assert len({r.headers["ecard-event-id"] for r in receiver.received}) == 4
    finally:
        if worker is not None:
            worker.stop()
            worker.dump_log()
        receiver.stop()


def _link(make_citizen, partner: Partner, number: int) -> None:
    linkage_create(
        actor=Actor.for_partner(partner.code),
        partner=partner,
        citizen=make_citizen(with_card=True),
        partner_user_ref=f"openid-{number}",
        verification_reference=f"face-{number}",
    )
