"""The per-process cache of partner key rows (payments/api/auth.py): one key read fewer per request,
and a revoked key or a suspended partner is still refused from the first request after the change."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections, transaction

from payments.api import auth as api_auth
from payments.models import PartnerKey
from payments.partners.services import partner_key_revoke, partner_suspend
from portal.actors import Actor
from testkit.api import make_partner_client, partner_of

TARGET = "/api/v1/events"
ADMIN = Actor.system("admin")


@pytest.fixture
def wallet(portal_key, regions, fresh_cache):
    return make_partner_client()


def _key_reads(client, expected_status: int = 200) -> int:
    """Send one signed request; how many times it read the key row from the database."""
    statements: list[str] = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(record):
        response = client.get(TARGET)
    assert response.status == expected_status, response.body
    assert response.signature_valid
    return sum('"payments_partnerkey" k JOIN' in sql for sql in statements)


def _cached(client) -> None:
    """Three requests: the key row is then cached and trusted (read on the first two only)."""
    for _ in range(3):
        _key_reads(client)


def _revoke_behind_the_cache(key_id: str) -> None:
    """Change the row without a save (no code path does): only the generation tells the cache."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE payments_partnerkey SET state = 'revoked' WHERE key_id = %s", [key_id])


@pytest.mark.django_db
def test_a_key_row_is_read_on_the_first_two_requests_and_then_from_the_cache(wallet):
    # The first read cannot know its generation (the nonce's round trip comes after it); the second,
    # read under a known generation, is then trusted.
    assert [_key_reads(wallet) for _ in range(4)] == [1, 1, 0, 0]


@pytest.mark.django_db
def test_a_revoked_key_is_refused_on_the_next_request(wallet):
    _cached(wallet)
    partner_key_revoke(actor=ADMIN, key=PartnerKey.objects.get(key_id=wallet.key_id), reason="leaked")
    response = wallet.get(TARGET)
    assert (response.status, response.json()["code"]) == (403, "forbidden")


@pytest.mark.django_db
def test_a_suspended_partner_is_refused_on_the_next_request_and_reactivated_accepted(wallet):
    from payments.partners.services import partner_reactivate

    _cached(wallet)
    partner = partner_suspend(actor=ADMIN, partner=partner_of(wallet), reason="audit")
    response = wallet.get(TARGET)
    assert (response.status, response.json()["code"]) == (403, "forbidden")
    partner_reactivate(actor=ADMIN, partner=partner)
    assert wallet.get(TARGET).status == 200


@pytest.mark.django_db
def test_the_generation_in_redis_decides_whether_a_cached_row_is_current(wallet):
    _cached(wallet)
    _revoke_behind_the_cache(wallet.key_id)
    assert _key_reads(wallet) == 0  # still the cached row: nothing announced the change
    # Another web process's save replaces the generation in Redis, shared by every process.
    redis.Redis.from_url(settings.REDIS_URL).set(cache.make_key(api_auth.GENERATION_KEY), "another")
    response = wallet.get(TARGET)
    assert (response.status, response.json()["code"]) == (403, "forbidden")


@pytest.mark.django_db
def test_a_generation_lost_with_redis_makes_every_cached_row_be_read_again(wallet):
    _cached(wallet)
    _revoke_behind_the_cache(wallet.key_id)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # as a Redis restart (it keeps nothing on disk)
    response = wallet.get(TARGET)
    assert (response.status, response.json()["code"]) == (403, "forbidden")


@pytest.mark.django_db
def test_a_cached_row_is_read_again_after_its_maximum_age(wallet, monkeypatch):
    _cached(wallet)
    monkeypatch.setattr(api_auth, "KEY_CACHE_SECONDS", 0.0)
    assert [_key_reads(wallet) for _ in range(2)] == [1, 1]


@pytest.mark.django_db
def test_a_deleted_key_is_unknown_on_the_next_request(wallet):
    _cached(wallet)
    PartnerKey.objects.filter(key_id=wallet.key_id).get().delete()
    response = wallet.get(TARGET)
    assert (response.status, response.json()["code"]) == (401, "unknown_key")


@pytest.mark.django_db(transaction=True)
def test_a_row_read_while_a_revocation_was_uncommitted_is_not_trusted_after_the_commit(
    portal_key,
    regions,
    fresh_cache,
):
    """The generation is replaced again after commit: a request that read the key row (still active)
    between the save and the commit must not leave it trusted once the revocation has committed."""
    wallet = make_partner_client()
    key = PartnerKey.objects.get(key_id=wallet.key_id)
    inside, done = threading.Event(), threading.Event()
    statuses: list[int] = []

    def requests_on_their_own_connection() -> None:
        try:
            for _ in range(2):
                statuses.append(wallet.get(TARGET).status)  # cached and trusted
            inside.wait(10)
            statuses.append(wallet.get(TARGET).status)  # the revocation is saved, not committed
            done.set()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(requests_on_their_own_connection)
        with transaction.atomic():
            partner_key_revoke(actor=ADMIN, key=key, reason="leaked")
            inside.set()
            assert done.wait(10)
        future.result(timeout=10)
    assert statuses == [200, 200, 200]
    # The row that request read, before the commit, is not trusted now: the next request is refused.
    response = wallet.get(TARGET)
    assert (response.status, response.json()["code"]) == (403, "forbidden")


@pytest.mark.django_db
def test_each_request_gets_its_own_copy_equal_to_the_key_and_partner_read_from_the_database(wallet):
    from django.db.models.signals import post_init

    _cached(wallet)
    first, _ = api_auth._cached_key(wallet.key_id)
    second, _ = api_auth._cached_key(wallet.key_id)
    read = PartnerKey.objects.select_related("partner").get(key_id=wallet.key_id)
    for copy in (first, second):
        for model_instance, expected in ((copy, read), (copy.partner, read.partner)):
            fields = [f.attname for f in type(expected)._meta.concrete_fields]
            assert [getattr(model_instance, name) for name in fields] == [getattr(expected, name) for name in fields]
            assert (model_instance._state.adding, model_instance._state.db) == (False, "default")
    assert first is not second and first.partner is not second.partner
    first.state = "revoked"
    first.partner.name = "changed by one request"
    assert second.state == read.state and second.partner.name == read.partner.name
    third, _ = api_auth._cached_key(wallet.key_id)
    assert third.state == read.state and third.partner.name == read.partner.name
    # A post_init receiver for these models is run as for any instance read.
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(sender)

    post_init.connect(receiver, sender=PartnerKey)
    try:
        fourth, _ = api_auth._cached_key(wallet.key_id)
    finally:
        post_init.disconnect(receiver, sender=PartnerKey)
    assert seen == [PartnerKey]
    assert fourth.key_id == read.key_id and fourth.partner.pk == read.partner.pk
