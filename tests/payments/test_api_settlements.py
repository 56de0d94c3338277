"""`/api/v1/settlements` through a partner client written from the contract alone."""

import json

import pytest
from rest_framework.renderers import JSONRenderer

from insurance import services as insurance_services
from payments.models import PartnerKind, Settlement, SettlementState
from testkit.api import BILL, confirm, idem_key, link, make_partner_client, mint, partner_of, settle, settled
from testkit.settlements import SYSTEM, insured

pytestmark = pytest.mark.django_db

SETTLEMENT_FIELDS = {
    "id",
    "state",
    "certificate_number",
    "family_binding_id",
    "facility_code",
    "policy",
    "lines",
    "total_fen",
    "eligible_fen",
    "deductible_fen",
    "fund_fen",
    "account_fen",
    "self_pay_fen",
    "use_personal_account",
    "partner_transaction_id",
    "expires_at",
    "created_at",
    "version",
}


@pytest.fixture
def wallet(world, fresh_cache):
    return make_partner_client()


@pytest.fixture
def linkage(wallet, regions):
    citizen, _ = insured(regions, balance=3000)
    return link(wallet, citizen)


# --- Create -------------------------------------------------------------------------------------


def test_a_wallet_settles_a_token_and_gets_the_contract_shape(wallet, linkage):
    response = settle(wallet, mint(wallet, linkage["id"]), use_personal_account=True)
    assert response.status == 201 and response.signature_valid
    body = response.json()
    assert set(body) == SETTLEMENT_FIELDS
    assert body["id"].startswith("stl_") and len(body["id"]) <= 40
    assert body["state"] == "pending_payment"
    assert body["certificate_number"] == linkage["certificate"]["number"]
    assert body["family_binding_id"] is None and body["partner_transaction_id"] is None
    assert body["policy"]["region_code"] == "310000" and body["policy"]["scheme"] == "employee"
    assert body["lines"][1] == {
        "service_code": "DRUGB",
        "quantity": 2,
        "unit_price_fen": 5000,
        "line_total_fen": 10000,
        "eligible_fen": 9000,
    }
    assert [
        body[k] for k in ("total_fen", "eligible_fen", "deductible_fen", "fund_fen", "account_fen", "self_pay_fen")
    ] == [13000, 11000, 10000, 700, 3000, 9300]
    assert body["created_at"].endswith("+08:00") and body["expires_at"].endswith("+08:00")
    assert body["version"] == 1


def test_a_service_platform_may_settle_a_token_minted_by_a_wallet(wallet, linkage):
    platform = make_partner_client(PartnerKind.SERVICE_PLATFORM)
    body = settled(platform, mint(wallet, linkage["id"]))
    assert Settlement.objects.get(public_id=body["id"]).partner == partner_of(platform)
    assert wallet.get(f"/api/v1/settlements/{body['id']}").status == 404
    assert platform.get(f"/api/v1/settlements/{body['id']}").json()["id"] == body["id"]


def test_a_retried_create_answers_the_first_response_and_settles_once(wallet, linkage):
    tok, key = mint(wallet, linkage["id"]), idem_key()
    first = settle(wallet, tok, key=key)
    again = settle(wallet, tok, key=key)
    assert (first.status, again.status) == (201, 201)
    assert again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true" and again.signature_valid
    assert Settlement.objects.count() == 1
    # The same token with a new key is a second use.
    assert settle(wallet, tok).code == "token_used"


def test_create_requires_an_idempotency_key(wallet, linkage):
    response = wallet.post(
        "/api/v1/settlements", {"token": mint(wallet, linkage["id"]), "facility_code": "H310-1", "lines": BILL}
    )
    assert (response.status, response.code) == (400, "idempotency_key_required")


@pytest.mark.parametrize("tok, code, status", [("garbage", "invalid_token", 422), ("", "invalid_token", 422)])
def test_a_bad_token_is_refused_with_its_code(wallet, linkage, tok, code, status):
    response = settle(wallet, tok)
    assert (response.status, response.code) == (status, code)
    assert response.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    "bill, facility, code, status",
    [
        (BILL, "NOPE", "unknown_facility", 422),
        ([{"service_code": "NOPE", "quantity": 1, "unit_price_fen": 1}], "H310-1", "unknown_service", 422),
        ([{"service_code": "REG", "quantity": 1, "unit_price_fen": 5001}], "H310-1", "price_above_maximum", 422),
    ],
)
def test_catalogue_refusals_answer_their_codes_and_leave_the_token_usable(
    wallet, linkage, bill, facility, code, status
):
    tok = mint(wallet, linkage["id"])
    response = wallet.post(
        "/api/v1/settlements", {"token": tok, "facility_code": facility, "lines": bill}, idempotency_key=idem_key()
    )
    assert (response.status, response.code) == (status, code)
    assert settle(wallet, tok).status == 201


def test_a_suspended_card_is_certificate_not_active(wallet, linkage):
    tok = mint(wallet, linkage["id"])
    card = insurance_services.Certificate.objects.get(number=linkage["certificate"]["number"])
    insurance_services.certificate_suspend(actor=SYSTEM, certificate=card, reason="lost phone")
    response = settle(wallet, tok)
    assert (response.status, response.code) == (409, "certificate_not_active")


def test_an_unlinked_wallets_token_is_linkage_inactive(wallet, linkage):
    tok = mint(wallet, linkage["id"])
    assert wallet.post(f"/api/v1/linkages/{linkage['id']}/unlink", {"reason": "citizen_request"}).status == 200
    assert settle(wallet, tok).code == "linkage_inactive"


def test_a_citizen_without_a_policy_is_policy_unavailable(wallet, regions):
    citizen, _ = insured(regions, region_code="440000")
    tok = mint(wallet, link(wallet, citizen)["id"])
    response = settle(wallet, tok)
    assert (response.status, response.code) == (409, "policy_unavailable")


@pytest.mark.parametrize(
    "body_change, field",
    [
        ({"lines": []}, "lines"),
        ({"lines": [BILL[0]] * 101}, "lines"),
        ({"lines": [{"service_code": "REG", "quantity": "1", "unit_price_fen": 100}]}, "lines[0].quantity"),
        ({"lines": [{"service_code": "REG", "quantity": 10000, "unit_price_fen": 100}]}, "lines[0].quantity"),
        ({"lines": [{"service_code": "REG", "quantity": 1, "unit_price_fen": 1.5}]}, "lines[0].unit_price_fen"),
        ({"lines": [{"service_code": "REG", "quantity": 1, "unit_price_fen": -1}]}, "lines[0].unit_price_fen"),
        ({"lines": [{"service_code": "REG", "quantity": 1, "unit_price_fen": 1, "x": 1}]}, "lines[0].x"),
        ({"use_personal_account": "yes"}, "use_personal_account"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_malformed_bodies_are_validation_errors(wallet, linkage, body_change, field):
    body = {"token": "t", "facility_code": "H310-1", "lines": BILL, **body_change}
    response = wallet.post("/api/v1/settlements", body, idempotency_key=idem_key())
    assert (response.status, response.code) == (400, "validation_error")
    assert any(name == field or name.startswith(field + ".") for name in response.json()["errors"])


def test_one_hundred_lines_are_accepted(wallet, linkage):
    body = settled(
        wallet, mint(wallet, linkage["id"]), bill=[{"service_code": "REG", "quantity": 1, "unit_price_fen": 10}] * 100
    )
    assert len(body["lines"]) == 100 and body["total_fen"] == 1000


def test_create_and_confirm_answer_exactly_what_drfs_renderer_gives_and_indent_still_works(wallet, regions):
    citizen, _ = insured(regions, balance=300_000)
    linkage = link(wallet, citizen)
    indent = {"Accept": "application/json; indent=2"}
    for tok, headers in ((mint(wallet, linkage["id"]), {}), (mint(wallet, linkage["id"]), indent)):
        body = {"token": tok, "facility_code": "H310-1", "lines": BILL, "use_personal_account": True}
        created = wallet.post("/api/v1/settlements", body, idempotency_key=idem_key(), extra_headers=headers)
        assert created.status == 201 and created.signature_valid
        paid = wallet.post(
            f"/api/v1/settlements/{created.json()['id']}/confirm",
            {"partner_transaction_id": "wx-1", "self_pay_fen": created.json()["self_pay_fen"]},
            idempotency_key=idem_key(),
            extra_headers=headers,
        )
        assert paid.status == 200 and paid.signature_valid and paid.json()["state"] == "paid"
        for response in (created, paid):
            assert response.headers["Content-Type"] == "application/json"
            if headers:
                assert b"\n" in response.body  # DRF's renderer, indented
            else:
                assert response.body == JSONRenderer().render(json.loads(response.body))


# --- Confirm, cancel, refund ---------------------------------------------------------------------


def test_confirm_is_idempotent_and_a_second_confirmation_is_invalid_state(wallet, linkage):
    settlement = settled(wallet, mint(wallet, linkage["id"]))
    key = idem_key()
    first = confirm(wallet, settlement, key=key)
    assert first.status == 200
    body = first.json()
    assert (body["state"], body["partner_transaction_id"], body["version"]) == ("paid", "wx-0001", 2)
    replay = confirm(wallet, settlement, key=key)
    assert replay.body == first.body and replay.headers["Idempotent-Replayed"] == "true"
    again = confirm(wallet, settlement)
    assert (again.status, again.code) == (409, "invalid_state")


def test_a_wrong_self_pay_is_amount_mismatch(wallet, linkage):
    settlement = settled(wallet, mint(wallet, linkage["id"]))
    response = confirm(wallet, settlement, self_pay=settlement["self_pay_fen"] + 1)
    assert (response.status, response.code) == (422, "amount_mismatch")


def test_confirming_an_expired_settlement_is_settlement_expired(wallet, linkage):
    settlement = settled(wallet, mint(wallet, linkage["id"]))
    from payments.settlements.services import settlements_expire_due

    row = Settlement.objects.get(public_id=settlement["id"])
    assert settlements_expire_due(now=row.expires_at) == 1
    response = confirm(wallet, settlement)
    assert (response.status, response.code) == (409, "settlement_expired")
    assert wallet.get(f"/api/v1/settlements/{settlement['id']}").json()["state"] == "expired"


def test_cancel_releases_and_a_second_cancel_is_invalid_state(wallet, linkage):
    settlement = settled(wallet, mint(wallet, linkage["id"]))
    response = wallet.post(f"/api/v1/settlements/{settlement['id']}/cancel", {})
    assert response.status == 200 and response.json()["state"] == "cancelled"
    again = wallet.post(f"/api/v1/settlements/{settlement['id']}/cancel")
    assert (again.status, again.code) == (409, "invalid_state")


def test_refund_is_idempotent_and_only_for_paid_settlements(wallet, linkage):
    settlement = settled(wallet, mint(wallet, linkage["id"]), use_personal_account=True)
    early = wallet.post(f"/api/v1/settlements/{settlement['id']}/refund", {"reason": "x"}, idempotency_key=idem_key())
    assert (early.status, early.code) == (409, "invalid_state")
    assert confirm(wallet, settlement).status == 200
    key = idem_key()
    first = wallet.post(f"/api/v1/settlements/{settlement['id']}/refund", {"reason": "returned"}, idempotency_key=key)
    assert first.status == 200 and first.json()["state"] == "refunded" and first.json()["version"] == 3
    replay = wallet.post(f"/api/v1/settlements/{settlement['id']}/refund", {"reason": "returned"}, idempotency_key=key)
    assert replay.body == first.body and replay.headers["Idempotent-Replayed"] == "true"
    assert Settlement.objects.get(public_id=settlement["id"]).account_entries.count() == 2  # debit, one credit


def test_every_answer_and_event_of_a_settlement_carries_the_lines_it_was_created_with(wallet, regions):
    # Confirm, cancel, refund and expiry read the settlement by hand-written SQL: its lines must come
    # back field for field (a positional mix-up once answered "service_code": "registration").
    import json as json_module

    from payments.models import OutboxEvent
    from payments.settlements.services import settlements_expire_due

    citizen, _ = insured(regions, balance=300_000)
    linkage = link(wallet, citizen)
    paid_one, cancelled_one, expired_one = (
        settled(wallet, mint(wallet, linkage["id"]), use_personal_account=True) for _ in range(3)
    )
    answers = [
        confirm(wallet, paid_one),
        wallet.post(f"/api/v1/settlements/{paid_one['id']}/refund", {"reason": "returned"}, idempotency_key=idem_key()),
        wallet.post(f"/api/v1/settlements/{cancelled_one['id']}/cancel", {}),
        wallet.get(f"/api/v1/settlements/{paid_one['id']}"),
    ]
    assert [a.status for a in answers] == [200, 200, 200, 200]
    for answer in answers:
        assert answer.json()["lines"] == paid_one["lines"]
    assert settlements_expire_due(now=Settlement.objects.get(public_id=expired_one["id"]).expires_at) == 1
    events = OutboxEvent.objects.filter(type__startswith="settlement.").order_by("id")
    assert [e.type for e in events] == [
        "settlement.paid",
        "settlement.refunded",
        "settlement.cancelled",
        "settlement.expired",
    ]
    for event in events:
        assert json_module.loads(event.body)["data"]["object"]["lines"] == paid_one["lines"], event.type


def test_refund_requires_a_reason(wallet, linkage):
    settlement = settled(wallet, mint(wallet, linkage["id"]))
    response = wallet.post(f"/api/v1/settlements/{settlement['id']}/refund", {}, idempotency_key=idem_key())
    assert (response.status, response.code) == (400, "validation_error")


# --- Reading and other partners --------------------------------------------------------------------


def test_another_partners_settlement_is_not_found_everywhere(wallet, linkage):
    settlement = settled(wallet, mint(wallet, linkage["id"]))
    other = make_partner_client()
    sid = settlement["id"]
    assert other.get(f"/api/v1/settlements/{sid}").code == "not_found"
    assert (
        other.post(
            f"/api/v1/settlements/{sid}/confirm",
            {"partner_transaction_id": "x", "self_pay_fen": 0},
            idempotency_key=idem_key(),
        ).status
        == 404
    )
    assert other.post(f"/api/v1/settlements/{sid}/cancel").status == 404
    assert other.post(f"/api/v1/settlements/{sid}/refund", {"reason": "x"}, idempotency_key=idem_key()).status == 404
    assert other.get("/api/v1/settlements").json() == {"results": [], "next_cursor": None}
    assert wallet.get("/api/v1/settlements/stl_doesnotexist").status == 404


def test_confirming_another_partners_settlement_answers_404_whatever_the_body_and_leaves_it_to_its_owner(
    wallet,
    linkage,
):
    settlement = settled(wallet, mint(wallet, linkage["id"]))
    other = make_partner_client()
    for body in ({"partner_transaction_id": "x", "self_pay_fen": settlement["self_pay_fen"]}, {"bad": 1}, {}):
        response = other.post(f"/api/v1/settlements/{settlement['id']}/confirm", body, idempotency_key=idem_key())
        assert (response.status, response.code) == (404, "not_found"), body
    assert (
        other.post("/api/v1/settlements/stl_doesnotexist/confirm", {"bad": 1}, idempotency_key=idem_key()).status == 404
    )
    # Nothing of the refusals is left, the row lock included: its partner confirms it.
    assert Settlement.objects.get(public_id=settlement["id"]).state == SettlementState.PENDING_PAYMENT
    assert confirm(wallet, settlement).json()["state"] == "paid"


def test_the_list_is_this_partners_oldest_first_filtered_by_state_and_paged(wallet, linkage):
    ids = [settled(wallet, mint(wallet, linkage["id"]))["id"] for _ in range(3)]
    wallet.post(f"/api/v1/settlements/{ids[1]}/cancel")
    page = wallet.get("/api/v1/settlements?limit=2").json()
    assert [s["id"] for s in page["results"]] == ids[:2] and page["next_cursor"]
    rest = wallet.get(f"/api/v1/settlements?limit=2&cursor={page['next_cursor']}").json()
    assert [s["id"] for s in rest["results"]] == ids[2:] and rest["next_cursor"] is None
    pending = wallet.get("/api/v1/settlements?state=pending_payment").json()["results"]
    assert [s["id"] for s in pending] == [ids[0], ids[2]]
    bad = wallet.get("/api/v1/settlements?state=lost")
    assert (bad.status, bad.code) == (400, "validation_error")


@pytest.mark.parametrize(
    "second, code",
    [
        ({"service_code": "NOPE", "quantity": 1, "unit_price_fen": 1}, "unknown_service"),
        ({"service_code": "REG", "quantity": 1, "unit_price_fen": 5001}, "price_above_maximum"),
    ],
)
def test_a_refused_lines_index_counts_from_zero_as_in_its_path(wallet, linkage, second, code):
    """PARTNER_API.md "Details": the `line` member is the 0-based index, as in `lines[1]`."""
    bill = [{"service_code": "REG", "quantity": 1, "unit_price_fen": 2000}, second]
    tok = mint(wallet, linkage["id"])
    response = wallet.post(
        "/api/v1/settlements", {"token": tok, "facility_code": "H310-1", "lines": bill}, idempotency_key=idem_key()
    )
    assert (response.status, response.code, response.json()["line"]) == (422, code, 1)
