"""`/linkages` as a wallet partner sees it (PARTNER_API.md "Linkage" and the linkage rows)."""

import json
import secrets
import time

import pytest

from insurance import services as insurance_services
from payments.api.base import _mismatch_key
from payments.models import LinkageState, OutboxEvent, PartnerKind, WalletLinkage
from portal import fastcache
from testkit.api import idem_key, link, link_payload, make_partner_client, partner_of

pytestmark = pytest.mark.django_db

LINKAGE_FIELDS = {
    "id",
    "partner_user_ref",
    "state",
    "end_reason",
    "certificate",
    "citizen",
    "created_at",
    "ended_at",
    "version",
}


@pytest.fixture
def wallet(portal_key, regions, fresh_cache):
    return make_partner_client()


def problem(response, status: int, code: str) -> dict:
    assert response.status == status, response.body
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.signature_valid
    body = response.json()
    assert body["code"] == code
    return body


def events_of(client, type_: str) -> list[dict]:
    return [
        json.loads(e.body) for e in OutboxEvent.objects.filter(partner=partner_of(client), type=type_).order_by("id")
    ]


# --- POST /linkages --------------------------------------------------------------------------


def test_linking_a_pending_card_answers_201_activates_it_and_tells_the_partner(wallet, make_citizen):
    citizen = make_citizen(name="张三明", with_card=True)
    payload = link_payload(citizen, ref="wx-user-1")
    response = wallet.post("/api/v1/linkages", payload, idempotency_key=idem_key())
    assert response.status == 201, response.body
    assert response.signature_valid
    body = response.json()
    assert set(body) == LINKAGE_FIELDS
    assert body["id"].startswith("lnk_") and len(body["id"]) <= 40
    assert body["partner_user_ref"] == "wx-user-1"
    assert body["state"] == "active" and body["end_reason"] is None and body["ended_at"] is None
    assert body["version"] == 1
    assert body["certificate"]["state"] == "active"
    assert body["certificate"]["number"] == citizen.current_certificate().number
    assert body["citizen"] == {
        "name_masked": "张*明",
        "id_number_masked": citizen.id_number_masked,
        "region_code": "310000",
        "scheme": "resident",
    }
    assert body["created_at"].endswith("+08:00")
    assert citizen.current_certificate().state == "active"
    created = events_of(wallet, "linkage.created")
    assert [e["data"]["object"]["id"] for e in created] == [body["id"]]
    assert events_of(wallet, "certificate.activated") == []  # the linkage event stands for the activation
    assert citizen.id_number not in response.body.decode()


def test_names_compare_after_nfkc_normalisation(wallet, make_citizen):
    citizen = make_citizen(name="ANNA李", with_card=True)
    response = wallet.post("/api/v1/linkages", link_payload(citizen, name="ＡＮＮＡ李"), idempotency_key=idem_key())
    assert response.status == 201, response.body


def test_a_lower_case_identity_number_check_letter_is_the_same_number(wallet, make_citizen):
    citizen = make_citizen(with_card=True)
    payload = link_payload(citizen)
    payload["id_number"] = payload["id_number"].lower()
    assert wallet.post("/api/v1/linkages", payload, idempotency_key=idem_key()).status == 201


@pytest.mark.parametrize("change", ["unknown_number", "other_name", "malformed_number"])
def test_an_unknown_number_or_another_name_answers_identity_mismatch(wallet, make_citizen, change):
    citizen = make_citizen(name="王小红", with_card=True)
    payload = link_payload(citizen)
    if change == "unknown_number":
        from testkit.citizens import new_id_number

        payload["id_number"] = new_id_number()
    elif change == "other_name":
        payload["name"] = "王小明"
    else:
        payload["id_number"] = "not a number"
    body = problem(wallet.post("/api/v1/linkages", payload, idempotency_key=idem_key()), 422, "identity_mismatch")
    assert "王小红" not in json.dumps(body, ensure_ascii=False)
    assert not WalletLinkage.objects.exists()
    assert citizen.current_certificate().state == "pending_activation"


def test_ten_mismatches_in_a_minute_then_answer_rate_limited_even_for_a_true_identity(wallet, make_citizen):
    citizen = make_citizen(with_card=True)
    for _ in range(10):
        response = wallet.post("/api/v1/linkages", link_payload(citizen, name="某某某"), idempotency_key=idem_key())
        problem(response, 422, "identity_mismatch")
    limited = wallet.post("/api/v1/linkages", link_payload(citizen), idempotency_key=idem_key())
    problem(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert not WalletLinkage.objects.exists()
    # Another partner is not limited by this one's mismatches.
    other = make_partner_client()
    assert other.post("/api/v1/linkages", link_payload(citizen), idempotency_key=idem_key()).status == 201


def _mismatches_ago(client, count: int, seconds: float) -> None:
    """`count` identity mismatches of the client's partner noted `seconds` ago."""
    for _ in range(count):
        fastcache.window_record_below(
            _mismatch_key(partner_of(client)), seconds=60, limit=1000, now=time.time() - seconds
        )


def test_the_minute_of_ten_mismatches_slides_across_clock_minutes(wallet, make_citizen):
    # Six mismatches forty seconds ago (whatever clock minute that was) and four now make ten
    # within a minute: refused until the oldest of them is a minute old, about twenty seconds on.
    citizen = make_citizen(with_card=True)
    _mismatches_ago(wallet, 6, 40)
    for _ in range(4):
        problem(
            wallet.post("/api/v1/linkages", link_payload(citizen, name="某某某"), idempotency_key=idem_key()),
            422,
            "identity_mismatch",
        )
    limited = wallet.post("/api/v1/linkages", link_payload(citizen), idempotency_key=idem_key())
    problem(limited, 429, "rate_limited")
    assert 15 <= int(limited.headers["Retry-After"]) <= 21


def test_mismatches_more_than_a_minute_old_no_longer_count(wallet, make_citizen):
    citizen = make_citizen(with_card=True)
    _mismatches_ago(wallet, 10, 61)
    _mismatches_ago(wallet, 9, 30)
    assert wallet.post("/api/v1/linkages", link_payload(citizen), idempotency_key=idem_key()).status == 201


def test_the_window_counts_the_last_minute_only():
    key = f"window-test:{secrets.token_hex(6)}"
    for at in (100.0, 130.0, 130.0, 159.5):
        fastcache.window_record_below(key, seconds=60, limit=1000, now=at)
    assert fastcache.window_times(key, seconds=60, now=160.0) == [130.0, 130.0, 159.5]
    assert fastcache.window_times(key, seconds=60, now=190.0) == [159.5]
    assert fastcache.window_times(key, seconds=60, now=220.0) == []


def test_a_citizen_without_a_card_answers_certificate_unavailable(wallet, make_citizen):
    citizen = make_citizen(with_card=False)
    response = wallet.post("/api/v1/linkages", link_payload(citizen), idempotency_key=idem_key())
    problem(response, 409, "certificate_unavailable")


def test_a_deceased_citizen_answers_certificate_unavailable(wallet, make_citizen, system_actor):
    citizen = make_citizen(with_card=True)
    insurance_services.citizen_set_status(actor=system_actor, citizen=citizen, status="deceased", reason="registry")
    response = wallet.post("/api/v1/linkages", link_payload(citizen), idempotency_key=idem_key())
    problem(response, 409, "certificate_unavailable")


def test_a_suspended_card_answers_certificate_unavailable(wallet, make_citizen, system_actor):
    citizen = make_citizen(with_card=True)
    card = insurance_services.certificate_activate(actor=system_actor, certificate=citizen.current_certificate())
    insurance_services.certificate_suspend(actor=system_actor, certificate=card, reason="lost phone")
    response = wallet.post("/api/v1/linkages", link_payload(citizen), idempotency_key=idem_key())
    problem(response, 409, "certificate_unavailable")


def test_a_second_linkage_of_the_citizen_answers_linkage_exists_naming_it(wallet, make_citizen):
    citizen = make_citizen(with_card=True)
    first = link(wallet, citizen)
    body = problem(
        wallet.post("/api/v1/linkages", link_payload(citizen), idempotency_key=idem_key()), 409, "linkage_exists"
    )
    assert body["linkage_id"] == first["id"]


def test_a_partner_user_ref_with_an_active_linkage_answers_linkage_exists_naming_it(wallet, make_citizen):
    first = link(wallet, make_citizen(with_card=True), ref="same-user")
    other = make_citizen(with_card=True)
    body = problem(
        wallet.post("/api/v1/linkages", link_payload(other, ref="same-user"), idempotency_key=idem_key()),
        409,
        "linkage_exists",
    )
    assert body["linkage_id"] == first["id"]


def test_another_partner_may_link_the_same_citizen(wallet, make_citizen):
    citizen = make_citizen(with_card=True)
    link(wallet, citizen)
    link(make_partner_client(), citizen)
    assert WalletLinkage.objects.filter(citizen=citizen, state="active").count() == 2


def test_the_citizen_can_link_again_after_unlinking(wallet, make_citizen):
    citizen = make_citizen(with_card=True)
    first = link(wallet, citizen, ref="u-1")
    assert wallet.post(f"/api/v1/linkages/{first['id']}/unlink", {"reason": "citizen_request"}).status == 200
    second = link(wallet, citizen, ref="u-1")
    assert second["id"] != first["id"]


@pytest.mark.parametrize(
    ("payload_change", "field"),
    [
        ({"name": "名" * 65}, "name"),
        ({"partner_user_ref": "r" * 129}, "partner_user_ref"),
        ({"verification_reference": "v" * 129}, "verification_reference"),
        ({"partner_user_ref": ""}, "partner_user_ref"),
        ({"name": 12}, "name"),
        ({"id_number": 310101195001011234}, "id_number"),
        ({"verification_reference": None}, "verification_reference"),
        ({"nickname": "x"}, "nickname"),
    ],
)
def test_bad_fields_answer_validation_error_naming_them(wallet, make_citizen, payload_change, field):
    citizen = make_citizen(with_card=True)
    payload = {**link_payload(citizen), **payload_change}
    body = problem(wallet.post("/api/v1/linkages", payload, idempotency_key=idem_key()), 400, "validation_error")
    assert field in body["errors"]


def test_a_missing_field_answers_validation_error(wallet, make_citizen):
    payload = link_payload(make_citizen(with_card=True))
    del payload["verification_reference"]
    body = problem(wallet.post("/api/v1/linkages", payload, idempotency_key=idem_key()), 400, "validation_error")
    assert "verification_reference" in body["errors"]


def test_linking_without_an_idempotency_key_answers_idempotency_key_required(wallet, make_citizen):
    response = wallet.post("/api/v1/linkages", link_payload(make_citizen(with_card=True)))
    problem(response, 400, "idempotency_key_required")
    assert not WalletLinkage.objects.exists()


# --- GET /linkages, GET /linkages/{id} ---------------------------------------------------------


def test_the_list_shows_only_this_partners_linkages_oldest_first_with_cursor(wallet, make_citizen):
    other = make_partner_client()
    link(other, make_citizen(with_card=True))
    mine = [link(wallet, make_citizen(with_card=True), ref=f"ref-{i}") for i in range(5)]
    seen, target = [], "/api/v1/linkages?limit=2"
    for _ in range(10):
        response = wallet.get(target)
        assert response.status == 200 and response.signature_valid
        page = response.json()
        assert len(page["results"]) <= 2
        seen.extend(item["id"] for item in page["results"])
        if page["next_cursor"] is None:
            break
        target = f"/api/v1/linkages?limit=2&cursor={page['next_cursor']}"
    assert seen == [item["id"] for item in mine]


def test_the_list_filters_by_partner_user_ref_and_state(wallet, make_citizen):
    a = link(wallet, make_citizen(with_card=True), ref="alice")
    b = link(wallet, make_citizen(with_card=True), ref="bob")
    wallet.post(f"/api/v1/linkages/{b['id']}/unlink", {"reason": "citizen_request"})
    assert [x["id"] for x in wallet.get("/api/v1/linkages?partner_user_ref=alice").json()["results"]] == [a["id"]]
    assert [x["id"] for x in wallet.get("/api/v1/linkages?state=unlinked").json()["results"]] == [b["id"]]
    assert [x["id"] for x in wallet.get("/api/v1/linkages?state=active").json()["results"]] == [a["id"]]
    assert wallet.get("/api/v1/linkages?partner_user_ref=bob&state=active").json()["results"] == []


@pytest.mark.parametrize("query", ["state=ended", "limit=0", "limit=201", "limit=abc", "cursor=***", "cursor=abc"])
def test_bad_list_parameters_answer_validation_error(wallet, query):
    problem(wallet.get(f"/api/v1/linkages?{query}"), 400, "validation_error")


def test_a_linkage_reads_by_id(wallet, make_citizen):
    created = link(wallet, make_citizen(with_card=True))
    response = wallet.get(f"/api/v1/linkages/{created['id']}")
    assert response.status == 200 and response.signature_valid
    assert response.json() == created


def test_another_partners_linkage_answers_not_found_like_an_unknown_one(wallet, make_citizen):
    theirs = link(make_partner_client(), make_citizen(with_card=True))
    for target in (f"/api/v1/linkages/{theirs['id']}", "/api/v1/linkages/lnk_doesnotexist"):
        problem(wallet.get(target), 404, "not_found")
    problem(wallet.post(f"/api/v1/linkages/{theirs['id']}/unlink", {"reason": "citizen_request"}), 404, "not_found")
    assert WalletLinkage.objects.get(public_id=theirs["id"]).state == LinkageState.ACTIVE


def test_a_suspension_grows_the_linkage_version(wallet, make_citizen, system_actor):
    citizen = make_citizen(with_card=True)
    created = link(wallet, citizen)
    insurance_services.certificate_suspend(actor=system_actor, certificate=citizen.current_certificate(), reason="r")
    body = wallet.get(f"/api/v1/linkages/{created['id']}").json()
    assert body["certificate"]["state"] == "suspended"
    assert body["version"] == created["version"] + 1


# --- POST /linkages/{id}/unlink ----------------------------------------------------------------


def test_unlinking_ends_the_linkage_and_tells_the_partner(wallet, make_citizen):
    created = link(wallet, make_citizen(with_card=True))
    response = wallet.post(f"/api/v1/linkages/{created['id']}/unlink", {"reason": "citizen_request"})
    assert response.status == 200 and response.signature_valid
    body = response.json()
    assert body["state"] == "unlinked"
    assert body["end_reason"] == "citizen_request"
    assert body["ended_at"] is not None
    assert body["version"] == created["version"] + 1
    assert [e["data"]["object"] for e in events_of(wallet, "linkage.unlinked")] == [body]


def test_unlinking_an_ended_linkage_returns_it_unchanged(wallet, make_citizen):
    created = link(wallet, make_citizen(with_card=True))
    first = wallet.post(f"/api/v1/linkages/{created['id']}/unlink", {"reason": "citizen_request"})
    second = wallet.post(f"/api/v1/linkages/{created['id']}/unlink", {"reason": "citizen_request"})
    assert second.status == 200
    assert second.json() == first.json()
    assert len(events_of(wallet, "linkage.unlinked")) == 1


@pytest.mark.parametrize(
    "payload", [{}, {"reason": "clerk"}, {"reason": "bored"}, {"reason": 1}, {"reason": "citizen_request", "note": "x"}]
)
def test_an_unlink_without_the_citizens_request_answers_validation_error(wallet, make_citizen, payload):
    created = link(wallet, make_citizen(with_card=True))
    problem(wallet.post(f"/api/v1/linkages/{created['id']}/unlink", payload), 400, "validation_error")
    assert WalletLinkage.objects.get(public_id=created["id"]).state == "active"


def test_a_service_platform_cannot_list_linkages(portal_key, regions):
    platform = make_partner_client(PartnerKind.SERVICE_PLATFORM)
    problem(platform.get("/api/v1/linkages"), 403, "forbidden")
