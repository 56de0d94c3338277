"""REDIS_URL naming a Sentinel-watched master: the cache, the nonces, the readiness check and a real
Celery worker follow a real failover (a master SIGKILLed, its replica promoted by the Sentinel)."""

import os

import kombu
import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from backoffice.metrics import BusinessCollector
from insurance import services as insurance_services
from payments import keys
from payments.models import OutboxEvent, OutboxState, Partner, PartnerKind
from portal import broker, fastcache, redisconn
from portal.actors import Actor
from portal.observability import health
from testkit.delivery import linked_card
from testkit.processes import CeleryWorker, WebhookReceiver, database_url_for_current_connection, wait_until
from testkit.redis_sentinel import SentinelGroup


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+sentinel://127.0.0.1:26379/ecard", ((("127.0.0.1", 26379),), "ecard", None, 0)),
        (
            "redis+sentinel://:p%40ss@10.0.0.1:26379,10.0.0.2:26380/main/3",
            ((("10.0.0.1", 26379), ("10.0.0.2", 26380)), "main", "p@ss", 3),
        ),
        ("redis+sentinel://:pw@[::1]:26379/ecard/0", ((("::1", 26379),), "ecard", "pw", 0)),
    ],
)
def test_sentinel_urls_parse(url, expected):
    address = redisconn.sentinel_address(url)
    assert (address.sentinels, address.master, address.password, address.db) == expected


def test_a_plain_url_is_one_server():
    assert redisconn.sentinel_address("redis://:pw@127.0.0.1:6379/0") is None
    assert redisconn.celery_broker("redis://127.0.0.1:6379/2") == (
        "redis://127.0.0.1:6379/2",
        "portal.broker:Transport",
        {},
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:6379/0", "must start with"),
        ("redis+sentinel://127.0.0.1/ecard", "host:port"),
        ("redis+sentinel://127.0.0.1:26379", "master"),
        ("redis+sentinel://127.0.0.1:26379/ecard/x", "master"),
    ],
)
def test_malformed_sentinel_urls_say_what_is_wrong(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        redisconn.sentinel_address(url)


def test_the_broker_asks_every_sentinel_with_the_password():
    url, transport, options = redisconn.celery_broker("redis+sentinel://:p%40ss@h1:1,h2:2/ecard/4")
    assert url == "sentinel://:p%40ss@h1:1/4;sentinel://:p%40ss@h2:2/4"
    assert transport == "portal.broker:SentinelTransport"
    assert options == {"master_name": "ecard", "sentinel_kwargs": {"password": "p@ss"}}


def test_the_broker_keeps_its_transport_when_it_moves_to_the_next_sentinel():
    url, transport, options = redisconn.celery_broker("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/ecard/0")
    connection = kombu.Connection(url, transport=transport, transport_options=options)
    assert type(connection.transport) is broker.SentinelTransport
    connection.maybe_switch_next()  # what Celery does on a connection error
    assert connection.as_uri().endswith("127.0.0.1:2/0")
    assert type(connection.transport) is broker.SentinelTransport


@pytest.fixture(scope="module")
def group():
    started = SentinelGroup().start()
    yield started
    started.stop()


@pytest.fixture
def sentinel_cache(group):
    """Django's cache (and so portal.fastcache) on the Sentinel group's master."""
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": [group.url],
            "KEY_PREFIX": "sentinel-test",
            "OPTIONS": {"pool_class": "portal.redisconn.CacheConnectionPool"},
        }
    }
    with override_settings(CACHES=caches, REDIS_URL=group.url):
        yield group


def test_the_cache_and_the_nonces_follow_a_failover(sentinel_cache):
    group = sentinel_cache
    assert fastcache.add_once("nonce-before", timeout=300)
    cache.set("kept", "yes", 300)
    before = group.master_port()
    group.sync_replica(next(n for n, p in group.ports.items() if p == before))

    dead, _ = group.kill_master()
    promoted = group.wait_failover(dead)

    # The next commands reach the promoted replica, with what was replicated before the kill.
    assert group.ports[promoted] != before
    assert not fastcache.add_once("nonce-before", timeout=300), "a nonce seen before the failover is seen again"
    assert fastcache.add_once("nonce-after", timeout=300)
    assert cache.get("kept") == "yes"
    assert fastcache.count("counter", timeout=60) == 1
    assert group.node(promoted).exists(cache.make_and_validate_key("nonce-after"))
    assert health.check_redis() == "ok"
    group.restart_as_replica(dead)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_on_sentinel_delivers_across_a_failover(group, make_citizen):
    """The worker's consumer and its beat's publisher both reach the new master by asking the Sentinel."""
    # The group may have failed over already (the test above): whichever node is master will do.
    call_command("rotate_portal_key", stdout=open(os.devnull, "w"))  # noqa: SIM115
    keys._forget_cached_key()
    receiver = WebhookReceiver().start()
    worker = CeleryWorker(
        env={
            "DATABASE_URL": database_url_for_current_connection(),
            "REDIS_URL": group.url.replace("/0", "/1"),
            "ECARD_DELIVERY_SWEEP_SECONDS": "1",
            "ECARD_DELIVERY_RETRY_SCHEDULE": "1,1,1,1,1,1,1,1,1,1",
            "DB_CONN_MAX_AGE": "0",
        },
        name="sentinel",
    )
    try:
        worker.start()
        partner = Partner.objects.create(
            code="wechat", name="WeChat Pay", kind=PartnerKind.WALLET, webhook_url=receiver.url
        )
        certificate = linked_card(make_citizen, partner)
        wait_until(
            lambda: OutboxEvent.objects.filter(state=OutboxState.DELIVERED).count() == 1, timeout=30, what="the first"
        )

        dead, _ = group.kill_master()
        group.wait_failover(dead)
        group.restart_as_replica(dead)
        insurance_services.certificate_suspend(
            actor=Actor.system("clerk"), certificate=certificate, reason="lost phone"
        )

        wait_until(
            lambda: OutboxEvent.objects.filter(state=OutboxState.DELIVERED).count() == 2,
            timeout=60,
            what="the event after the failover delivered",
        )
        assert {r.headers["ecard-event-type"] for r in receiver.received} == {
            "linkage.created",
            "certificate.suspended",
        }
    except BaseException:
        worker.dump_log()
        raise
    finally:
        worker.stop()
        receiver.stop()


@pytest.mark.django_db
def test_the_metrics_count_the_replicas_in_sync_and_the_sentinels_watching():
    """What EcardRedisWithoutReplica and EcardRedisSentinelsMissing (deploy/prometheus) read."""
    three = SentinelGroup(sentinels=3).start()

    def scraped() -> dict[str, float]:
        with override_settings(REDIS_URL=three.url):
            families = BusinessCollector().collect()
            return {f.name: f.samples[0].value for f in families if f.name.startswith("ecard_redis")}

    try:
        wait_until(
            lambda: redisconn.sentinel_view(three.url) == (1, 3), timeout=20, what="the Sentinels know each other"
        )
        assert scraped() == {"ecard_redis_replicas": 1, "ecard_redis_sentinels": 3}
        three.processes["b"].kill()
        three.processes["sentinel2"].kill()
        wait_until(
            lambda: redisconn.sentinel_view(three.url) == (0, 2), timeout=20, what="the replica and a Sentinel down"
        )
        assert scraped() == {"ecard_redis_replicas": 0, "ecard_redis_sentinels": 2}
    finally:
        three.stop()
    assert redisconn.sentinel_view("redis://127.0.0.1:6379/0") is None  # one server: no such figures
