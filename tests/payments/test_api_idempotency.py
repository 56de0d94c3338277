"""`Idempotency-Key` (PARTNER_API.md "Idempotency"), exercised on `POST /linkages`."""

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from payments.idempotency import idempotency_records_purge
from payments.models import IdempotencyRecord, OutboxEvent, Partner, WalletLinkage
from portal.models import AuditEvent
from tests.payments.api_helpers import (  # noqa: F401
    fresh_cache,
    idem_key,
    link_payload,
    make_partner_client,
    partner_of,
    portal_key,
)

TARGET = "/api/v1/linkages"


@pytest.fixture
def wallet(portal_key, regions, fresh_cache):  # noqa: F811
    return make_partner_client()


def problem(response, status: int, code: str) -> dict:
    assert response.status == status, response.body
    assert response.signature_valid
    assert response.json()["code"] == code
    return response.json()


def wire_body(payload: dict) -> bytes:
    """The body exactly as tests/partner_client.py sends it."""
    return json.dumps(payload, ensure_ascii=False).encode()


# --- Replays ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_retry_with_the_same_key_replays_the_first_response_byte_for_byte_without_linking_again(wallet, make_citizen):
    payload = link_payload(make_citizen(with_card=True))
    key = idem_key()
    first = wallet.post(TARGET, payload, idempotency_key=key)
    assert first.status == 201
    assert "Idempotent-Replayed" not in first.headers
    again = wallet.post(TARGET, payload, idempotency_key=key)
    assert again.status == 201
    assert again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    # Signed afresh, for this request's nonce.
    assert again.signature_valid
    assert again.headers["Ecard-Nonce"] != first.headers["Ecard-Nonce"]
    assert WalletLinkage.objects.count() == 1
    assert OutboxEvent.objects.filter(type="linkage.created").count() == 1
    assert AuditEvent.objects.filter(action="linkage.create").count() == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_answers_idempotency_key_reused(wallet, make_citizen):
    key = idem_key()
    assert wallet.post(TARGET, link_payload(make_citizen(with_card=True)), idempotency_key=key).status == 201
    other = make_citizen(with_card=True)
    problem(wallet.post(TARGET, link_payload(other), idempotency_key=key), 422, "idempotency_key_reused")
    assert not WalletLinkage.objects.filter(citizen=other).exists()


@pytest.mark.django_db
def test_the_same_key_with_another_target_answers_idempotency_key_reused(wallet, make_citizen):
    payload = link_payload(make_citizen(with_card=True))
    key = idem_key()
    assert wallet.post(TARGET, payload, idempotency_key=key).status == 201
    problem(wallet.post(TARGET + "?x=1", payload, idempotency_key=key), 422, "idempotency_key_reused")


@pytest.mark.django_db
def test_keys_are_scoped_to_the_partner(wallet, make_citizen):
    key = idem_key()
    assert wallet.post(TARGET, link_payload(make_citizen(with_card=True)), idempotency_key=key).status == 201
    other = make_partner_client()
    response = other.post(TARGET, link_payload(make_citizen(with_card=True)), idempotency_key=key)
    assert response.status == 201
    assert "Idempotent-Replayed" not in response.headers


@pytest.mark.django_db
def test_a_409_is_stored_and_replayed_even_after_the_conflict_is_gone(wallet, make_citizen):
    citizen = make_citizen(with_card=True)
    first_link = wallet.post(TARGET, link_payload(citizen), idempotency_key=idem_key()).json()
    payload, key = link_payload(citizen), idem_key()
    conflict = wallet.post(TARGET, payload, idempotency_key=key)
    problem(conflict, 409, "linkage_exists")
    assert wallet.post(f"{TARGET}/{first_link['id']}/unlink", {"reason": "citizen_request"}).status == 200
    replay = wallet.post(TARGET, payload, idempotency_key=key)
    assert (replay.status, replay.body) == (409, conflict.body)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert not WalletLinkage.objects.filter(state="active").exists()


@pytest.mark.django_db
def test_a_422_is_stored_and_its_replay_does_not_count_as_another_mismatch(wallet, make_citizen):
    payload, key = link_payload(make_citizen(with_card=True), name="不对的"), idem_key()
    first = wallet.post(TARGET, payload, idempotency_key=key)
    problem(first, 422, "identity_mismatch")
    for _ in range(12):
        replay = wallet.post(TARGET, payload, idempotency_key=key)
        assert (replay.status, replay.body) == (422, first.body)
    assert wallet.post(TARGET, link_payload(make_citizen(with_card=True)), idempotency_key=idem_key()).status == 201


@pytest.mark.django_db
def test_a_400_is_not_stored_so_the_key_can_be_retried_with_a_corrected_request(wallet, make_citizen):
    citizen, key = make_citizen(with_card=True), idem_key()
    bad = {**link_payload(citizen), "name": 7}
    problem(wallet.post(TARGET, bad, idempotency_key=key), 400, "validation_error")
    assert not IdempotencyRecord.objects.exists()
    assert wallet.post(TARGET, link_payload(citizen), idempotency_key=key).status == 201


@pytest.mark.django_db
def test_a_429_is_not_stored(wallet, make_citizen):
    citizen = make_citizen(with_card=True)
    for _ in range(10):
        wallet.post(TARGET, link_payload(citizen, name="某某某"), idempotency_key=idem_key())
    key = idem_key()
    problem(wallet.post(TARGET, link_payload(citizen), idempotency_key=key), 429, "rate_limited")
    assert not IdempotencyRecord.objects.filter(key=key).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key", [None, "", "k" * 256, "clé", "tab\there", "bell\x07"])
def test_a_missing_or_malformed_key_answers_idempotency_key_required(wallet, make_citizen, key):
    response = wallet.post(TARGET, link_payload(make_citizen(with_card=True)), idempotency_key=key)
    problem(response, 400, "idempotency_key_required")
    assert not WalletLinkage.objects.exists()


@pytest.mark.django_db
def test_a_key_of_255_printable_characters_is_accepted(wallet, make_citizen):
    key = ("~ !" * 100)[:255]
    assert wallet.post(TARGET, link_payload(make_citizen(with_card=True)), idempotency_key=key).status == 201


# --- Records left running -----------------------------------------------------------------------


def _running_record(client, payload: dict, key: str, *, age: timedelta) -> IdempotencyRecord:
    record = IdempotencyRecord.objects.create(
        partner=partner_of(client), key=key, method="POST", target=TARGET,
        body_sha256=hashlib.sha256(wire_body(payload)).hexdigest(),
    )
    IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - age)
    return record


@pytest.mark.django_db
def test_a_request_still_running_answers_idempotency_key_in_use(wallet, make_citizen):
    payload, key = link_payload(make_citizen(with_card=True)), idem_key()
    _running_record(wallet, payload, key, age=timedelta(seconds=5))
    problem(wallet.post(TARGET, payload, idempotency_key=key), 409, "idempotency_key_in_use")
    assert not WalletLinkage.objects.exists()
    assert IdempotencyRecord.objects.get(key=key).state == "in_progress"  # the in-use answer is not stored


@pytest.mark.django_db
def test_a_record_left_by_a_crashed_process_is_taken_over_after_a_minute(wallet, make_citizen):
    payload, key = link_payload(make_citizen(with_card=True)), idem_key()
    _running_record(wallet, payload, key, age=timedelta(seconds=61))
    first = wallet.post(TARGET, payload, idempotency_key=key)
    assert first.status == 201, first.body
    replay = wallet.post(TARGET, payload, idempotency_key=key)
    assert (replay.status, replay.body) == (201, first.body)


@pytest.mark.django_db
def test_the_purge_keeps_keys_for_24_hours_then_frees_them(wallet, make_citizen):
    citizen = make_citizen(with_card=True)
    payload, key = link_payload(citizen), idem_key()
    assert wallet.post(TARGET, payload, idempotency_key=key).status == 201
    recent_key = idem_key()
    wallet.post(TARGET, link_payload(make_citizen(with_card=True)), idempotency_key=recent_key)
    IdempotencyRecord.objects.filter(key=key).update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    IdempotencyRecord.objects.filter(key=recent_key).update(created_at=timezone.now() - timedelta(hours=23))
    assert idempotency_records_purge() == 1
    assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {recent_key}


# --- Concurrency over real HTTP -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_second_request_while_the_first_runs_answers_in_use_and_the_first_is_then_replayed(
    live_server, portal_key, regions, make_citizen, fresh_cache,  # noqa: F811
):
    client = make_partner_client(base_url=live_server.url)
    partner = partner_of(client)
    payload, key = link_payload(make_citizen(with_card=True)), idem_key()
    blocked = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        with transaction.atomic():
            # Hold the partner row the way linkage_create locks it: the first request waits inside its handler.
            Partner.objects.select_for_update(no_key=True).get(pk=partner.pk)
            first_future = pool.submit(lambda: (blocked.set(), client.post(TARGET, payload, idempotency_key=key))[1])
            blocked.wait(5)
            for _ in range(100):
                if IdempotencyRecord.objects.filter(key=key).exists():
                    break
                threading.Event().wait(0.05)
            second = client.post(TARGET, payload, idempotency_key=key)
            problem(second, 409, "idempotency_key_in_use")
        first = first_future.result(timeout=30)
    assert first.status == 201, first.body
    third = client.post(TARGET, payload, idempotency_key=key)
    assert (third.status, third.body) == (201, first.body)
    assert third.headers["Idempotent-Replayed"] == "true"
    assert third.signature_valid
    assert WalletLinkage.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_execute_once(live_server, portal_key, regions, make_citizen, fresh_cache):  # noqa: F811
    client = make_partner_client(base_url=live_server.url)
    payload, key = link_payload(make_citizen(with_card=True)), idem_key()
    start = threading.Barrier(8)

    def send(_):
        start.wait(10)
        return client.post(TARGET, payload, idempotency_key=key)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(send, range(8)))
    created = [r for r in responses if r.status == 201]
    assert created, [(r.status, r.body) for r in responses]
    assert len({r.body for r in created}) == 1
    for response in responses:
        assert response.signature_valid
        assert response.status == 201 or response.code == "idempotency_key_in_use", response.body
    assert WalletLinkage.objects.count() == 1
    assert OutboxEvent.objects.filter(type="linkage.created").count() == 1
