"""The partner payment flow on the SQLite demo database, end to end (run by tests/test_sqlite_demo_payments.py).

The suite runs on PostgreSQL; the demo (`make run` without DATABASE_URL) runs on SQLite, where
the hand-written PostgreSQL SQL of the payment hot paths cannot run. This script is started in
a subprocess whose environment has no DATABASE_URL (so `portal.settings` picks SQLite at
SQLITE_PATH): it migrates that file, seeds through the services, drives the signed partner API
through Django's test client, and prints one JSON summary for the test to check. Not collected
as a test itself (no `test_` prefix).

    SQLITE_PATH=/tmp/flow.sqlite3 DJANGO_SETTINGS_MODULE=portal.settings python -m tests.sqlite_demo_flow
"""

import datetime as dt
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FACILITY = "H310000001"
BALANCE_FEN = 200_000
KEY_ID = "sqlite-demo-key"
BILL = [
    {"service_code": "110200001", "quantity": 1, "unit_price_fen": 1000},
    {"service_code": "250101015", "quantity": 1, "unit_price_fen": 2000},
    {"service_code": "XJ01CAA040A001", "quantity": 2, "unit_price_fen": 1500},
    {"service_code": "210200001", "quantity": 3, "unit_price_fen": 60000},  # past the deductible: the fund pays too
]


def _seed() -> dict:
    """Catalogue, portal key, a wallet partner and its key, a citizen with a linked card and a balance."""
    from insurance import services as insurance_services
    from insurance.catalogue_demo import seed_catalogue
    from insurance.identity import make_identity_number
    from payments import keys, ledger
    from payments.models import Partner, PartnerKey, PartnerKind
    from payments.services import linkage_create
    from portal.actors import Actor
    from portal.models import Region
    from tests.partner_client import new_key_pair

    actor = Actor.system("sqlite demo flow")
    seed_catalogue(actor=actor)
    keys.portal_key_create(actor=actor)
    partner = Partner.objects.create(code="demo-wallet", name="Demo wallet", kind=PartnerKind.WALLET,
                                     webhook_url="http://127.0.0.1:9/hook")
    private, public = new_key_pair()
    PartnerKey.objects.create(partner=partner, key_id=KEY_ID, public_key=public)
    citizen = insurance_services.citizen_register(
        actor=actor, id_number=make_identity_number("310101", dt.date(1970, 5, 1), 123), name="王小明",
        phone="13900000001", region=Region.objects.get(code="310000"), scheme="employee")
    insurance_services.certificate_issue(actor=actor, citizen=citizen, reason="sqlite demo flow")
    linkage = linkage_create(actor=actor, partner=partner, citizen=citizen, partner_user_ref="demo-1")
    ledger.account_balance_set(actor=actor, citizen=citizen, balance_fen=BALANCE_FEN, note="sqlite demo flow")
    return {"private": private, "citizen_id": citizen.pk, "linkage": linkage.public_id}


def _books(citizen_id: int) -> dict:
    """The citizen's account, its ledger and the year accumulators, as stored."""
    from django.db.models import Sum

    from payments.models import AccountEntry, CitizenYearAccumulator, PersonalAccount

    account = PersonalAccount.objects.get(citizen_id=citizen_id)
    entries = AccountEntry.objects.filter(account=account).order_by("id")
    return {
        "balance_fen": account.balance_fen,
        "held_fen": account.held_fen,
        "ledger_sum_fen": entries.aggregate(total=Sum("amount_fen"))["total"] or 0,
        "entries": [[entry.kind, entry.amount_fen, entry.balance_after_fen] for entry in entries],
        "accumulators": [[a.deductible_used_fen, a.fund_used_fen]
                         for a in CitizenYearAccumulator.objects.filter(citizen_id=citizen_id).order_by("year")],
    }


def run() -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from tests.partner_client import PartnerClient

    call_command("migrate", verbosity=0)
    seeded = _seed()
    client = PartnerClient(key_id=KEY_ID, private_key=seeded["private"], django_client=Client())
    linkage = seeded["linkage"]
    summary: dict = {"vendor": connection.vendor, "steps": {}}
    steps = summary["steps"]

    def record(name: str, response) -> dict:
        body = response.json() if response.body else {}
        steps[name] = {"status": response.status, "code": body.get("code"), "state": body.get("state"),
                       "signature_valid": response.signature_valid,
                       "replayed": response.headers.get("Idempotent-Replayed")}
        return body

    def key() -> str:
        return uuid.uuid4().hex

    # Paid, then refunded.
    minted = record("mint", client.post(f"/api/v1/linkages/{linkage}/qr-tokens", {}))
    token = minted["token"]
    steps["mint"]["expires_at"] = minted.get("expires_at")
    verified = record("verify", client.post("/api/v1/certificates/verify", {"token": token}))
    steps["verify"].update({name: verified.get(name) for name in ("token_used", "token_expires_at", "citizen")})
    create_payload = {"token": token, "facility_code": FACILITY, "lines": BILL, "use_personal_account": True}
    create_key = key()
    first = client.post("/api/v1/settlements", create_payload, idempotency_key=create_key)
    created = record("create", first)
    steps["create"].update({name: created.get(name) for name in (
        "total_fen", "deductible_fen", "fund_fen", "account_fen", "self_pay_fen")})
    replay = client.post("/api/v1/settlements", create_payload, idempotency_key=create_key)
    record("create_replayed", replay)
    steps["create_replayed"]["same_body"] = replay.body == first.body
    record("create_token_used", client.post("/api/v1/settlements", create_payload, idempotency_key=key()))
    reverified = record("verify_after_use", client.post("/api/v1/certificates/verify", {"token": token}))
    steps["verify_after_use"]["token_used"] = reverified.get("token_used")
    summary["after_create"] = _books(seeded["citizen_id"])
    record("confirm", client.post(f"/api/v1/settlements/{created['id']}/confirm",
                                  {"partner_transaction_id": "tx-" + key(), "self_pay_fen": created["self_pay_fen"]},
                                  idempotency_key=key()))
    summary["after_confirm"] = _books(seeded["citizen_id"])
    record("refund", client.post(f"/api/v1/settlements/{created['id']}/refund", {"reason": "demo refund"},
                                 idempotency_key=key()))
    summary["after_refund"] = _books(seeded["citizen_id"])

    # Pending, then cancelled.
    token = record("mint_2", client.post(f"/api/v1/linkages/{linkage}/qr-tokens", {}))["token"]
    second = record("create_2", client.post("/api/v1/settlements", {**create_payload, "token": token},
                                            idempotency_key=key()))
    summary["after_create_2"] = _books(seeded["citizen_id"])
    record("cancel_2", client.post(f"/api/v1/settlements/{second['id']}/cancel", {}))
    summary["after_cancel_2"] = _books(seeded["citizen_id"])
    record("read_1", client.get(f"/api/v1/settlements/{created['id']}"))
    record("read_2", client.get(f"/api/v1/settlements/{second['id']}"))
    return summary


if __name__ == "__main__":
    print(json.dumps(run(), ensure_ascii=False))
