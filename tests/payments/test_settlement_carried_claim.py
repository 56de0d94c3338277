"""Settlement create and confirm carry the idempotency key's claim, passed to them explicitly, in
their first statement (payments/settlements/store.py, payments/api/idempotency.py `Claim`): the key's own
answers must stay exactly those of a claim taken before the handler, and an answer of the key must
touch nothing of the settlement's.

The rows the create and the confirm lock (the card; the settlement) are held by another
connection while the request runs with a `lock_timeout`: a request that tried to lock them before
looking at its key would fail (500) instead of answering.
"""

from contextlib import contextmanager

import pytest
from django.db import connection

from payments import keys
from payments.models import IdempotencyRecord, QrToken, Settlement, SettlementState
from testkit.api import (
    BILL,
    confirm,
    idem_key,
    link,
    make_partner_client,
    mint,
    partner_of,
    problem,
    sent_eight_at_once,
    settle,
    settled,
)
from testkit.database import LOCK_KEY, other_connection
from testkit.partner_client import PartnerClient
from testkit.settlements import insured

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def wallet(world, fresh_cache):
    return make_partner_client()


@pytest.fixture
def linkage(wallet, regions, signing_key):
    citizen, _ = insured(regions, balance=3000)
    # The portal key that verifies QR tokens, as a running process has it (read once, then kept):
    # else the create's first statement would be that read, and the claim would run alone before it.
    keys.public_key_for(signing_key.key_id)
    return link(wallet, citizen)


@contextmanager
def lock_timeout():
    """The test client's requests run on this thread's connection: a lock wait fails after 2 s."""
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")


@contextmanager
def held(sql: str, params: list, *, key: tuple[str, int] | None = None):
    """Another connection holds the rows `sql` locks (and the key's lock, if given) within."""
    with other_connection() as other:
        if key is not None:
            other.execute(f"SELECT pg_advisory_lock({LOCK_KEY})", list(key))
        other.execute("BEGIN")
        assert other.execute(sql, params).fetchall(), "nothing to hold"
        try:
            with lock_timeout():
                yield
        finally:
            other.execute("ROLLBACK")
            if key is not None:
                other.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})", list(key))


def card_of(linkage: dict) -> tuple[str, list]:
    return 'SELECT id FROM "insurance_certificate" WHERE "number" = %s FOR UPDATE', [linkage["certificate"]["number"]]


def settlement_row(settlement: dict) -> tuple[str, list]:
    return 'SELECT id FROM "payments_settlement" WHERE "public_id" = %s FOR UPDATE', [settlement["id"]]


def test_a_create_whose_key_is_in_use_answers_409_without_touching_the_card_or_the_token(wallet, linkage):
    tok, key = mint(wallet, linkage["id"]), idem_key()
    with held(*card_of(linkage), key=(key, partner_of(wallet).pk)):
        problem(settle(wallet, tok, key=key), 409, "idempotency_key_in_use")
    assert not IdempotencyRecord.objects.filter(key=key).exists()  # the in-use answer is not stored
    assert QrToken.objects.get().used_at is None
    assert settle(wallet, tok, key=key).status == 201  # the key, once free, runs the request


def test_a_confirm_whose_key_is_in_use_answers_409_without_touching_the_settlement(wallet, linkage):
    created = settled(wallet, mint(wallet, linkage["id"]))
    key = idem_key()
    with held(*settlement_row(created), key=(key, partner_of(wallet).pk)):
        problem(confirm(wallet, created, key=key), 409, "idempotency_key_in_use")
    assert not IdempotencyRecord.objects.filter(key=key).exists()
    assert Settlement.objects.get().state == SettlementState.PENDING_PAYMENT
    assert confirm(wallet, created, key=key).status == 200


def test_a_replayed_create_and_confirm_answer_from_their_records_without_locking_anything(wallet, linkage):
    tok, create_key, confirm_key = mint(wallet, linkage["id"]), idem_key(), idem_key()
    another_tok = mint(wallet, linkage["id"])
    first = settle(wallet, tok, key=create_key)
    assert first.status == 201, first.body
    paid = confirm(wallet, first.json(), key=confirm_key)
    assert paid.status == 200, paid.body
    with held(*card_of(linkage)), held(*settlement_row(first.json())):
        again = settle(wallet, tok, key=create_key)
        assert (again.status, again.body, again.headers["Idempotent-Replayed"]) == (201, first.body, "true")
        assert again.signature_valid
        again = confirm(wallet, first.json(), key=confirm_key)
        assert (again.status, again.body, again.headers["Idempotent-Replayed"]) == (200, paid.body, "true")
        # The same keys with other requests: reused, whatever the request's own fate would be.
        problem(settle(wallet, another_tok, key=create_key), 422, "idempotency_key_reused")
        problem(confirm(wallet, first.json(), key=confirm_key, self_pay=1), 422, "idempotency_key_reused")
    assert Settlement.objects.count() == 1


@pytest.mark.parametrize(
    "body_change",
    [
        pytest.param({"lines": []}, id="a body the handler refuses (400) before any statement"),
        pytest.param({"token": "garbage"}, id="a token refused (422) before any statement"),
    ],
)
def test_a_refusal_before_any_statement_still_answers_the_keys_own_answer_first(wallet, linkage, body_change):
    tok, key = mint(wallet, linkage["id"]), idem_key()
    assert settle(wallet, tok, key=key).status == 201
    body = {"token": tok, "facility_code": "H310-1", "lines": BILL, **body_change}
    problem(wallet.post("/api/v1/settlements", body, idempotency_key=key), 422, "idempotency_key_reused")
    other_key = idem_key()
    with held(*card_of(linkage), key=(other_key, partner_of(wallet).pk)):
        problem(wallet.post("/api/v1/settlements", body, idempotency_key=other_key), 409, "idempotency_key_in_use")
    # With a free key the handler's own refusal answers, as before.
    refused = wallet.post("/api/v1/settlements", body, idempotency_key=idem_key())
    assert refused.status in (400, 422) and refused.code in ("validation_error", "invalid_token"), refused.body


def test_concurrent_creates_with_one_key_settle_once(live_server, wallet, linkage):
    tok = mint(wallet, linkage["id"])
    over_http = PartnerClient(key_id=wallet.key_id, private_key=wallet.private_key, base_url=live_server.url)
    key = idem_key()
    sent_eight_at_once(lambda: settle(over_http, tok, key=key))
    assert Settlement.objects.count() == 1
