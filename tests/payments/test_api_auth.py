"""Signed requests and the errors every endpoint shares (PARTNER_API.md "Authentication", "Errors"),
as a partner meets them through testkit/partner_client.py."""

import json
import math
import time

import pytest
from django.utils import timezone

from payments.models import PartnerKey, PartnerKeyState, PartnerKind, PartnerState
from testkit.api import make_partner_client, partner_of
from testkit.partner_client import authorization, new_key_pair, verify_response

pytestmark = pytest.mark.django_db

TARGET = "/api/v1/linkages?limit=10"


def assert_problem(response, status: int, code: str, *, signed_for_nonce: tuple[dict, str] | None = None) -> dict:
    assert response.status == status, response.body
    assert response.headers["Content-Type"].startswith("application/problem+json")
    if signed_for_nonce is None:
        assert response.signature_valid, "every API response is signed by the portal"
    else:  # the portal echoes the nonce the (unusable) header carried
        portal_keys, nonce = signed_for_nonce
        assert verify_response(portal_keys, response.status, nonce, response.headers, response.body)
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


@pytest.fixture
def wallet(portal_key):
    return make_partner_client()


def signed_get(client, target=TARGET, *, private_key=None, key_id=None, timestamp=None, nonce=None, sign_target=None):
    header, nonce = authorization(
        private_key or client.private_key,
        key_id or client.key_id,
        "GET",
        sign_target or target,
        b"",
        timestamp=timestamp,
        nonce=nonce,
    )
    response = client.request("GET", target, sign=False, extra_headers={"Authorization": header})
    # The portal signs its answer over the nonce this request carried.
    response.signature_valid = verify_response(
        client.portal_keys, response.status, nonce, response.headers, response.body
    )
    return response


def test_a_well_signed_request_succeeds_and_its_response_is_signed(wallet):
    response = wallet.get(TARGET)
    assert response.status == 200, response.body
    assert response.signature_valid
    assert response.json() == {"results": [], "next_cursor": None}


# --- The checks, in the contract's order ----------------------------------------------------


def test_a_request_without_authorization_header_answers_authentication_required(wallet):
    response = wallet.get(TARGET, sign=False)
    assert_problem(response, 401, "authentication_required")
    assert response.headers["WWW-Authenticate"] == "ECARD-ED25519"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "ECARD-ED25519 ",
        'ECARD-ED25519 key_id="k",timestamp="1",nonce="abcdefghijklmnop"',  # no signature
        'ECARD-ED25519 key_id="k",timestamp="soon",nonce="abcdefghijklmnop",signature="AA=="',
        'ECARD-ED25519 key_id="k",timestamp="1",nonce="short",signature="AA=="',
        'ECARD-ED25519 key_id="k",timestamp="1",nonce="abc def ghi jkl mno",signature="AA=="',
        'ECARD-ED25519 key_id="k",key_id="k",timestamp="1",nonce="abcdefghijklmnop",signature="AA=="',
    ],
)
def test_an_unparsable_authorization_header_answers_authentication_required(wallet, header):
    response = wallet.get(TARGET, sign=False, extra_headers={"Authorization": header})
    nonce = "abcdefghijklmnop" if 'nonce="abcdefghijklmnop"' in header else ""
    assert_problem(response, 401, "authentication_required", signed_for_nonce=(wallet.portal_keys, nonce))


def test_an_unknown_key_id_answers_unknown_key_even_with_a_bad_signature_and_timestamp(wallet):
    other_private, _ = new_key_pair()
    response = signed_get(wallet, private_key=other_private, key_id="nobody-knows-this-key", timestamp=1)
    assert_problem(response, 401, "unknown_key")


def test_a_signature_by_another_private_key_answers_invalid_signature(wallet):
    other_private, _ = new_key_pair()
    assert_problem(signed_get(wallet, private_key=other_private), 401, "invalid_signature")


def test_a_signature_over_another_target_answers_invalid_signature(wallet):
    assert_problem(signed_get(wallet, sign_target="/api/v1/linkages?limit=11"), 401, "invalid_signature")


def test_a_bad_signature_is_reported_before_a_stale_timestamp(wallet):
    other_private, _ = new_key_pair()
    response = signed_get(wallet, private_key=other_private, timestamp=int(time.time()) - 3600)
    assert_problem(response, 401, "invalid_signature")


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_a_timestamp_more_than_300_seconds_away_answers_stale_timestamp(wallet, offset):
    # Whole seconds rounded away from the portal's clock: int() of now + 301 is only 300.x s ahead
    # once the request reaches the portal in the next second (seen in CI).
    now = time.time()
    timestamp = math.ceil(now) + offset if offset > 0 else math.floor(now) + offset
    assert_problem(signed_get(wallet, timestamp=timestamp), 401, "stale_timestamp")


def test_a_timestamp_within_300_seconds_is_accepted(wallet):
    assert signed_get(wallet, timestamp=int(time.time()) - 250).status == 200


def test_a_nonce_used_twice_with_one_key_answers_replayed_request(wallet):
    nonce = "replay-nonce-0123456789"
    assert signed_get(wallet, nonce=nonce).status == 200
    assert_problem(signed_get(wallet, nonce=nonce), 401, "replayed_request")


def test_the_same_nonce_with_another_key_is_not_a_replay(wallet):
    nonce = "shared-nonce-0123456789"
    other = make_partner_client()
    assert signed_get(wallet, nonce=nonce).status == 200
    assert signed_get(other, nonce=nonce).status == 200


def test_a_nonce_is_recorded_only_once_the_signature_has_verified(wallet):
    nonce = "first-bad-then-good-0001"
    other_private, _ = new_key_pair()
    assert_problem(signed_get(wallet, private_key=other_private, nonce=nonce), 401, "invalid_signature")
    assert_problem(signed_get(wallet, nonce=nonce, timestamp=int(time.time()) - 1000), 401, "stale_timestamp")
    assert signed_get(wallet, nonce=nonce).status == 200
    assert_problem(signed_get(wallet, nonce=nonce), 401, "replayed_request")


def test_a_revoked_key_answers_forbidden(wallet):
    PartnerKey.objects.filter(key_id=wallet.key_id).update(state=PartnerKeyState.REVOKED, revoked_at=timezone.now())
    assert_problem(wallet.get(TARGET), 403, "forbidden")


def test_a_revoked_key_with_a_bad_signature_answers_invalid_signature_first(wallet):
    PartnerKey.objects.filter(key_id=wallet.key_id).update(state=PartnerKeyState.REVOKED)
    other_private, _ = new_key_pair()
    assert_problem(signed_get(wallet, private_key=other_private), 401, "invalid_signature")


def test_a_replayed_nonce_of_a_revoked_key_answers_replayed_request_first(wallet):
    nonce = "revoked-replay-0123456789"
    assert signed_get(wallet, nonce=nonce).status == 200
    PartnerKey.objects.filter(key_id=wallet.key_id).update(state=PartnerKeyState.REVOKED)
    assert_problem(signed_get(wallet, nonce=nonce), 401, "replayed_request")


def test_a_suspended_partner_answers_forbidden(wallet):
    partner = partner_of(wallet)
    partner.state = PartnerState.SUSPENDED
    partner.save(update_fields=["state"])
    assert_problem(wallet.get(TARGET), 403, "forbidden")


# --- Limits and malformed requests ----------------------------------------------------------


def test_a_body_of_two_megabytes_answers_payload_too_large(wallet):
    body = json.dumps({"token": "x" * (2 * 1024 * 1024)}).encode()
    assert_problem(wallet.post("/api/v1/certificates/verify", raw_body=body), 413, "payload_too_large")


def test_a_body_that_is_not_json_content_answers_unsupported_media_type(wallet):
    response = wallet.post("/api/v1/certificates/verify", raw_body=b"token=abc", content_type="text/plain")
    assert_problem(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"a string"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_answers_validation_error(wallet, body):
    assert_problem(wallet.post("/api/v1/certificates/verify", raw_body=body), 400, "validation_error")


def test_a_field_of_the_wrong_type_answers_validation_error_naming_it(wallet):
    body = assert_problem(wallet.post("/api/v1/certificates/verify", {"token": 12345}), 400, "validation_error")
    assert "token" in body["errors"]


def test_an_unknown_field_answers_validation_error_naming_it(wallet):
    response = wallet.post("/api/v1/certificates/verify", {"token": "v1.a.b", "extra": True})
    body = assert_problem(response, 400, "validation_error")
    assert body["errors"] == {"extra": ["Unknown field."]}


def test_an_unsupported_method_answers_method_not_allowed(wallet):
    assert_problem(wallet.request("DELETE", "/api/v1/linkages"), 405, "method_not_allowed")
    assert_problem(wallet.get("/api/v1/certificates/verify"), 405, "method_not_allowed")


@pytest.mark.parametrize("target", ["/api/v1/nothing-here", "/api/v1/linkages/lnk_x/nope", "/api/v1/", "/api/v1/keys/"])
def test_an_unknown_api_path_answers_a_signed_not_found_problem(wallet, target):
    assert_problem(wallet.get(target), 404, "not_found")
    assert_problem(wallet.post(target, {}), 404, "not_found")
    assert_problem(wallet.get(target, sign=False), 404, "not_found")


def test_rate_limit_answers_rate_limited_with_retry_after(wallet):
    partner = partner_of(wallet)
    partner.rate_limit_per_second = 1
    partner.save(update_fields=["rate_limit_per_second"])
    statuses = [wallet.get(TARGET) for _ in range(5)]
    limited = [r for r in statuses if r.status == 429]
    assert limited, [r.status for r in statuses]
    assert_problem(limited[0], 429, "rate_limited")
    assert int(limited[0].headers["Retry-After"]) >= 1


# --- Partner kinds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "payload"),
    [
        ("GET", "/api/v1/linkages", None),
        (
            "POST",
            "/api/v1/linkages",
            {"id_number": "x", "name": "x", "partner_user_ref": "x", "verification_reference": "x"},
        ),
        ("GET", "/api/v1/linkages/lnk_abc", None),
        ("POST", "/api/v1/linkages/lnk_abc/unlink", {"reason": "citizen_request"}),
        ("POST", "/api/v1/linkages/lnk_abc/qr-tokens", {}),
    ],
)
def test_a_service_platform_is_forbidden_linkages_and_qr_tokens(portal_key, method, target, payload):
    platform = make_partner_client(PartnerKind.SERVICE_PLATFORM)
    response = platform.request(method, target, payload, idempotency_key="k-1" if method == "POST" else None)
    assert_problem(response, 403, "forbidden")


def test_a_service_platform_may_verify_tokens(portal_key):
    platform = make_partner_client(PartnerKind.SERVICE_PLATFORM)
    assert_problem(platform.post("/api/v1/certificates/verify", {"token": "nonsense"}), 422, "invalid_token")


# --- Nothing answers a 5xx ----------------------------------------------------------------------

JUNK_BODIES = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b"0",
    b'{"a": 1}',
    b"\x00\x01",
    b"[" * 50_000 + b"]" * 50_000,
    b'{"token": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"id_number": 1e999, "name": {}}',
    b'{"reason": null}',
    b'{"family_binding_id": ["fbd_x"]}',
    b'{"partner_user_ref": "\\ud800", "token": "\\udfff"}',
    b'{"partner_user_ref": "a\\u0000b", "token": "\\u0000", "reason": "\\u0000"}',
    b'{"\\u0000": 1}',
    b'{"id_number": "310101195001011234", "name": "\\ud83d", "partner_user_ref": "r", "verification_reference": "v"}',
    '{"name": "\ud800"}'.encode("utf-8", "surrogatepass"),
]
ENDPOINTS = [
    ("POST", "/api/v1/linkages"),
    ("GET", "/api/v1/linkages?state=%00&partner_user_ref=%ff"),
    ("GET", "/api/v1/linkages?partner_user_ref=a%00b"),
    ("GET", "/api/v1/linkages?cursor=%00"),
    ("GET", "/api/v1/linkages/%00"),
    ("POST", "/api/v1/linkages/lnk_x/unlink"),
    ("POST", "/api/v1/linkages/lnk_x/qr-tokens"),
    ("POST", "/api/v1/certificates/verify"),
    ("PUT", "/api/v1/linkages"),
    ("PATCH", "/api/v1/certificates/verify"),
]


@pytest.mark.parametrize(("method", "target"), ENDPOINTS)
def test_no_malformed_request_produces_a_server_error(wallet, method, target):
    for body in JUNK_BODIES:
        for key in (None, "k-" + str(len(body))):
            response = wallet.request(method, target, raw_body=body, idempotency_key=key)
            assert response.status < 500, (body[:40], response.body)
            assert response.signature_valid
