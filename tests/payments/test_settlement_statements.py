"""How many SQL statements a settlement costs through the signed API, so that it cannot silently grow.

Issue 4's benchmark (docs/benchmarks-settlements.md) lives on this number: each statement is a
round trip and, through the ORM, a compilation. Counted with the test's own transaction around
the request, in which the handler's BEGIN and COMMIT are a SAVEPOINT and a RELEASE. The counts
include the idempotency key's lock-and-read and its stored response; the partner-key read of
authentication is not among them once the key row is cached (payments/api/auth.py: a process reads it
on its first two requests only).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments import keys
from payments.api.idempotency import Claim, KeyedRequest
from payments.models import AccountEntry, OutboxEvent, Settlement
from payments.settlements import services
from payments.settlements.services import LineInput
from portal.models import AuditEvent
from testkit.api import confirm, link, make_partner_client, mint, settled
from testkit.settlements import SYSTEM, insured

pytestmark = pytest.mark.django_db

# create: BEGIN, the token/card/catalogue/policy read with the audit row's number and the year and
# account locked, carrying the idempotency key's claim passed to it (payments/settlements/store.py
# `create_context`), then settlement with its lines, the reservation and the audit row in one
# statement (`settlement_insert`), the stored response, COMMIT: 5. Under the claim the service joins
# the request's transaction without a savepoint (`_transaction` in payments/settlements/services.py).
CREATE_MAX = 5
# confirm: BEGIN, the partner's settlement found by public id and locked with its lines and the
# account and the audit row's number, carrying the key's claim (`settlement_lock_with_account`),
# then entry, balance, settlement update, outbox event and audit row in one statement
# (`settlement_change_write`), the stored response, COMMIT: 5.
CONFIRM_MAX = 5
# Of which the service's own, under a claim: one read, one write.
SERVICE_STATEMENTS = 2


@pytest.fixture
def wallet(world, fresh_cache):
    return make_partner_client()


def test_create_and_confirm_stay_within_their_statement_budget(
    wallet, regions, django_assert_max_num_queries, monkeypatch
):
    # The portal's signing key is re-read every CACHE_SECONDS per process (one statement then): on a
    # slow machine that could fall inside a measured call, so it is kept for the test.
    monkeypatch.setattr(keys, "CACHE_SECONDS", 3600)
    keys._forget_cached_key()
    citizen, _ = insured(regions, balance=300_000)
    linkage = link(wallet, citizen)
    # The citizen's first settlement of the year also creates its year accumulator: not the steady state.
    first = settled(wallet, mint(wallet, linkage["id"]), use_personal_account=True)
    assert confirm(wallet, first).status == 200

    tok = mint(wallet, linkage["id"])
    with django_assert_max_num_queries(CREATE_MAX):
        created = settled(wallet, tok, use_personal_account=True)
    with django_assert_max_num_queries(CONFIRM_MAX):
        response = confirm(wallet, created)
    assert response.status == 200 and response.json()["state"] == "paid"

    # What the statements must still have written: the debit, the audit events, the partner's event.
    settlement = Settlement.objects.get(public_id=created["id"])
    assert settlement.state == "paid" and settlement.account_fen > 0
    assert AccountEntry.objects.filter(settlement=settlement, amount_fen=-settlement.account_fen).count() == 1
    assert set(AuditEvent.objects.filter(object_id=created["id"]).values_list("action", flat=True)) == {
        "settlement.create",
        "settlement.confirm",
    }
    assert OutboxEvent.objects.filter(object_id=created["id"], type="settlement.paid").count() == 1


def test_the_count_is_of_the_whole_request(wallet, regions):
    """The budget above would mean nothing if the requests ran on another connection."""
    citizen, _ = insured(regions, balance=300_000)
    linkage = link(wallet, citizen)
    tok = mint(wallet, linkage["id"])
    with CaptureQueriesContext(connection) as captured:
        settled(wallet, tok)
    # Prepared statements (portal/prepared.py: the hot reads and writes) are logged without their
    # text, the ORM's with it: both kinds must be in the count.
    sql = [query["sql"] for query in captured.captured_queries]
    assert sum(1 for text in sql if text is None) >= 4
    assert any(text and "SAVEPOINT" in text for text in sql)  # the handler's transaction, inside the test's
    assert len(sql) >= 10


def test_the_services_read_and_write_in_one_statement_each_and_carry_the_claim(
    wallet, regions, django_assert_num_queries, monkeypatch
):
    """The store's interface: the create's read carries the claim it is given, and each service
    reads once and writes once (the audit row's number read with the rows it locks)."""
    monkeypatch.setattr(keys, "CACHE_SECONDS", 3600)
    citizen, _ = insured(regions, balance=300_000)
    linkage = link(wallet, citizen)
    first = settled(wallet, mint(wallet, linkage["id"]), use_personal_account=True)  # the year's accumulator
    assert confirm(wallet, first).status == 200
    partner = Settlement.objects.get(public_id=first["id"]).partner
    tok = mint(wallet, linkage["id"])
    claim = Claim(KeyedRequest(partner.pk, "statements-create", "POST", "/api/v1/settlements", "0" * 64))
    with django_assert_num_queries(SERVICE_STATEMENTS):
        created = services.settlement_create(
            actor=SYSTEM,
            partner=partner,
            token=tok,
            facility_code="H310-1",
            lines=[LineInput("REG", 1, 2000)],
            use_personal_account=True,
            claim=claim,
        )
    assert not claim.pending
    claim = Claim(KeyedRequest(partner.pk, "statements-confirm", "POST", "/confirm", "0" * 64))
    with django_assert_num_queries(SERVICE_STATEMENTS):
        services.settlement_confirm(
            actor=SYSTEM,
            partner=partner,
            public_id=created.public_id,
            partner_transaction_id="wx-1",
            self_pay_fen=created.self_pay_fen,
            claim=claim,
        )
    assert not claim.pending and Settlement.objects.get(pk=created.pk).state == "paid"
