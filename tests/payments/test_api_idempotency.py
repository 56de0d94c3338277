"""`Idempotency-Key` (PARTNER_API.md "Idempotency"), exercised on `POST /linkages`."""

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from payments.api.idempotency import idempotency_records_purge
from payments.models import IdempotencyRecord, OutboxEvent, Partner, WalletLinkage
from portal.models import AuditEvent
from testkit.api import idem_key, link_payload, make_partner_client, partner_of, problem, sent_eight_at_once, wire_body
from testkit.database import LOCK_KEY, other_connection, sent_while_held

TARGET = "/api/v1/linkages"


@pytest.fixture
def wallet(portal_key, regions, fresh_cache):
    return make_partner_client()


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


# --- Keys in use, records left by the earlier version -------------------------------------------


def _key_locked_elsewhere(partner: Partner, key: str) -> bool:
    """Whether some other session holds the key's advisory lock (pg_locks splits its 64 bits in two)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND pid <> pg_backend_pid() AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            f" AND ((classid::bigint << 32) | objid::bigint) = {LOCK_KEY})",
            [key, partner.pk],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_a_request_still_running_answers_idempotency_key_in_use(wallet, make_citizen):
    payload, key = link_payload(make_citizen(with_card=True)), idem_key()
    partner = partner_of(wallet)
    with other_connection() as running:  # holds the key as a request still running with it does
        running.execute(f"SELECT pg_advisory_lock({LOCK_KEY})", [key, partner.pk])
        assert _key_locked_elsewhere(partner, key)
        problem(wallet.post(TARGET, payload, idempotency_key=key), 409, "idempotency_key_in_use")
        assert not WalletLinkage.objects.exists()
        assert not IdempotencyRecord.objects.filter(key=key).exists()  # the in-use answer is not stored
        # The lock is the partner's key, not the key alone.
        other = make_partner_client()
        assert other.post(TARGET, link_payload(make_citizen(with_card=True)), idempotency_key=key).status == 201
        # Released here rather than by closing: a closed connection's backend lets its locks go only
        # when it exits, which may be after the next request has asked for the key (CI saw this).
        assert running.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})", [key, partner.pk]).fetchone()[0]
    first = wallet.post(TARGET, payload, idempotency_key=key)
    assert first.status == 201, first.body
    assert "Idempotent-Replayed" not in first.headers


def _running_record(client, payload: dict, key: str) -> IdempotencyRecord:
    """An `in_progress` record as the earlier version wrote before running the handler."""
    return IdempotencyRecord.objects.create(
        partner=partner_of(client),
        key=key,
        method="POST",
        target=TARGET,
        body_sha256=hashlib.sha256(wire_body(payload)).hexdigest(),
        state="in_progress",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("same_request", [True, False])
def test_an_in_progress_record_left_by_the_earlier_version_does_not_block_the_key(wallet, make_citizen, same_request):
    payload, key = link_payload(make_citizen(with_card=True)), idem_key()
    _running_record(wallet, payload if same_request else link_payload(make_citizen(with_card=True)), key)
    first = wallet.post(TARGET, payload, idempotency_key=key)
    assert first.status == 201, first.body
    assert "Idempotent-Replayed" not in first.headers
    record = IdempotencyRecord.objects.get(key=key)
    assert (record.state, record.response_status, bytes(record.response_body)) == ("completed", 201, first.body)
    replay = wallet.post(TARGET, payload, idempotency_key=key)
    assert (replay.status, replay.body, replay.headers["Idempotent-Replayed"]) == (201, first.body, "true")
    assert WalletLinkage.objects.count() == 1


@pytest.mark.django_db
def test_a_refusal_left_over_an_in_progress_record_is_stored(wallet, make_citizen):
    payload, key = link_payload(make_citizen(with_card=True), name="不对的"), idem_key()
    _running_record(wallet, payload, key)
    first = wallet.post(TARGET, payload, idempotency_key=key)
    problem(first, 422, "identity_mismatch")
    assert IdempotencyRecord.objects.get(key=key).state == "completed"
    replay = wallet.post(TARGET, payload, idempotency_key=key)
    assert (replay.status, replay.body, replay.headers["Idempotent-Replayed"]) == (422, first.body, "true")


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
    live_server,
    portal_key,
    regions,
    make_citizen,
    fresh_cache,
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
            for _ in range(100):  # the first request holds the key's lock
                if _key_locked_elsewhere(partner, key):
                    break
                threading.Event().wait(0.05)
            else:
                pytest.fail("the first request never took the key's lock")
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
def test_concurrent_requests_with_one_key_execute_once(live_server, portal_key, regions, make_citizen, fresh_cache):
    client = make_partner_client(base_url=live_server.url)
    payload, key = link_payload(make_citizen(with_card=True)), idem_key()
    sent_eight_at_once(lambda: client.post(TARGET, payload, idempotency_key=key))
    assert WalletLinkage.objects.count() == 1
    assert OutboxEvent.objects.filter(type="linkage.created").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", ["same request", "other request", "same request refused by the handler"])
def test_a_request_whose_key_is_stored_while_it_runs_is_rolled_back_and_answered_from_the_record(
    portal_key,
    regions,
    make_citizen,
    fresh_cache,
    case,
):
    # Another request with the key commits its record after this one has read the key (none stored yet):
    # READ COMMITTED takes the read's snapshot before the lock, so the lock does not exclude it. A
    # refusal (here 422 identity_mismatch) is stored after its rollback: it finds the record likewise.
    wallet = make_partner_client()
    partner = partner_of(wallet)
    citizen, key = make_citizen(with_card=True), idem_key()
    payload = link_payload(citizen, name="不对的" if case.endswith("refused by the handler") else None)
    stored_body = b'{"stored": "first"}'
    sent_body = b"{}" if case == "other request" else wire_body(payload)
    with other_connection() as first:
        first.execute("BEGIN")
        # Holds the partner row that linkage_create locks: this request reads the key, then waits in its handler.
        first.execute('SELECT FROM "payments_partner" WHERE id = %s FOR UPDATE', [partner.pk])
        first.execute(
            'INSERT INTO "payments_idempotencyrecord" (partner_id, key, method, target, body_sha256, state,'
            " response_status, response_body, response_content_type, created_at, completed_at)"
            " VALUES (%s, %s, 'POST', %s, %s, 'completed', 201, %s, 'application/json', now(), now())",
            [partner.pk, key, TARGET, hashlib.sha256(sent_body).hexdigest(), stored_body],
        )
        response = sent_while_held(first, lambda: wallet.post(TARGET, payload, idempotency_key=key))
    if case != "other request":
        assert (response.status, response.body, response.headers["Idempotent-Replayed"]) == (201, stored_body, "true")
        assert response.signature_valid
    else:
        problem(response, 422, "idempotency_key_reused")
    assert not WalletLinkage.objects.exists()  # its linkage was rolled back
    assert not OutboxEvent.objects.filter(type="linkage.created").exists()
    assert bytes(IdempotencyRecord.objects.get(partner=partner, key=key).response_body) == stored_body


@pytest.mark.django_db
def test_the_store_statement_sends_what_the_orm_would_send_for_the_record(wallet):
    from django.http import HttpResponse

    from payments import rows
    from payments.api.idempotency import KeyedRequest, store_statement
    from payments.models import IdempotencyState

    keyed = KeyedRequest(
        partner_id=partner_of(wallet).pk, key="k-1", method="POST", target="/api/v1/settlements", body_sha256="ab" * 32
    )
    response = HttpResponse(b'{"id":"stl_1"}', status=201, content_type="application/json")
    sql, params = store_statement(keyed, response)
    _, fields = rows.insert_sql(IdempotencyRecord)
    record = IdempotencyRecord(
        partner_id=keyed.partner_id,
        key=keyed.key,
        method=keyed.method,
        target=keyed.target,
        body_sha256=keyed.body_sha256,
        state=IdempotencyState.COMPLETED,
        response_status=201,
        response_body=b'{"id":"stl_1"}',
        response_content_type="application/json",
        completed_at=params[[f.attname for f in fields].index("completed_at")],
    )
    orm = rows.insert_values(record, fields)
    ours = params[:-1]
    assert len(ours) == len(orm) == len(fields)
    for field, mine, theirs in zip(fields, ours, orm, strict=True):
        if field.attname == "created_at":  # auto_now_add: the ORM's own clock
            assert abs(mine - theirs) < timedelta(seconds=5)
        elif field.attname == "response_body":
            assert mine == theirs.obj  # psycopg.Binary(bytes): the same bytea
        else:
            assert mine == theirs, field.attname
    assert params[-1] == "in_progress"
    assert sql.count("%s") == len(params)
