"""A settlement request whose `Idempotency-Key` is stored by another request while it runs.

The stored response is written after the settlement's change, in the same transaction
(payments/api/idempotency.py `run_idempotent`). When that INSERT finds the key already completed, the
whole change must be rolled back and the request answered from the stored record.
"""

import hashlib

import pytest

from payments.models import AccountEntry, IdempotencyRecord, OutboxEvent, PersonalAccount, Settlement, SettlementState
from portal.models import AuditEvent
from testkit.api import BILL, confirm, idem_key, link, make_partner_client, mint, partner_of, settle, settled, wire_body
from testkit.database import other_connection, sent_while_held
from testkit.settlements import insured


def _stored_meanwhile(partner_id: int, key: str, target: str, body: bytes, lock_sql: str, lock_params: list, send):
    """Hold the row the request will lock, store a completed record for its key, and commit once the
    request waits on the row: the request read the key before the record existed."""
    stored_body = b'{"stored": "first"}'
    with other_connection() as first:
        first.execute("BEGIN")
        first.execute(lock_sql, lock_params)
        first.execute(
            'INSERT INTO "payments_idempotencyrecord" (partner_id, key, method, target, body_sha256, state,'
            " response_status, response_body, response_content_type, created_at, completed_at)"
            " VALUES (%s, %s, 'POST', %s, %s, 'completed', 200, %s, 'application/json', now(), now())",
            [partner_id, key, target, hashlib.sha256(body).hexdigest(), stored_body],
        )
        response = sent_while_held(first, send)
    assert (response.status, response.body, response.headers["Idempotent-Replayed"]) == (200, stored_body, "true")
    assert response.signature_valid
    assert bytes(IdempotencyRecord.objects.get(partner_id=partner_id, key=key).response_body) == stored_body


@pytest.mark.django_db(transaction=True)
def test_a_create_whose_key_is_stored_while_it_runs_is_rolled_back_whole(world, regions, fresh_cache):
    wallet = make_partner_client()
    citizen, _ = insured(regions, balance=3000)
    linkage = link(wallet, citizen)
    token, key = mint(wallet, linkage["id"]), idem_key()
    body = {"token": token, "facility_code": "H310-1", "lines": BILL, "use_personal_account": True}
    account = PersonalAccount.objects.get(citizen=citizen)
    _stored_meanwhile(
        partner_of(wallet).pk,
        key,
        "/api/v1/settlements",
        wire_body(body),
        'SELECT FROM "payments_personalaccount" WHERE id = %s FOR UPDATE',
        [account.pk],
        lambda: wallet.post("/api/v1/settlements", body, idempotency_key=key),
    )
    assert not Settlement.objects.exists()
    assert not AuditEvent.objects.filter(action="settlement.create").exists()
    account.refresh_from_db()
    assert account.held_fen == 0 and account.balance_fen == 3000
    # The token was not consumed: it settles now, under another key.
    assert settle(wallet, token, use_personal_account=True).status == 201


@pytest.mark.django_db(transaction=True)
def test_a_confirm_whose_key_is_stored_while_it_runs_is_rolled_back_whole(world, regions, fresh_cache):
    wallet = make_partner_client()
    citizen, _ = insured(regions, balance=3000)
    linkage = link(wallet, citizen)
    created = settled(wallet, mint(wallet, linkage["id"]), use_personal_account=True)
    key = idem_key()
    body = {"partner_transaction_id": "wx-0001", "self_pay_fen": created["self_pay_fen"]}
    target = f"/api/v1/settlements/{created['id']}/confirm"
    _stored_meanwhile(
        partner_of(wallet).pk,
        key,
        target,
        wire_body(body),
        'SELECT FROM "payments_settlement" WHERE public_id = %s FOR UPDATE',
        [created["id"]],
        lambda: wallet.post(target, body, idempotency_key=key),
    )
    settlement = Settlement.objects.get(public_id=created["id"])
    assert settlement.state == SettlementState.PENDING_PAYMENT and settlement.version == 1
    assert not AccountEntry.objects.filter(settlement=settlement).exists()
    assert not OutboxEvent.objects.filter(type="settlement.paid").exists()
    assert not AuditEvent.objects.filter(action="settlement.confirm").exists()
    account = PersonalAccount.objects.get(citizen=citizen)
    assert account.held_fen == created["account_fen"] > 0 and account.balance_fen == 3000
    # Confirmed now, under another key: the change and its stored response commit together.
    paid = confirm(wallet, created)
    assert paid.status == 200 and paid.json()["state"] == "paid"
    assert OutboxEvent.objects.filter(type="settlement.paid").count() == 1
    assert IdempotencyRecord.objects.filter(target=target).count() == 2
