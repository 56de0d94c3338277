"""QR tokens: `POST /linkages/{id}/qr-tokens` and `POST /certificates/verify` (PARTNER_API.md "QR tokens")."""

import base64
import json
import re
import time
from datetime import datetime, timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.utils import timezone

from insurance import services as insurance_services
from payments import keys
from payments.models import FamilyBinding, PartnerKind, QrToken, WalletLinkage
from payments.tokens import services as qr
from portal.actors import Actor
from testkit.api import activate_card, link, make_partner_client, partner_of

pytestmark = pytest.mark.django_db

TOKEN_RE = re.compile(r"^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
VERIFY_FIELDS = {"certificate_number", "state", "token_used", "citizen", "presented_by", "token_expires_at"}
VERIFIED_CITIZEN_FIELDS = {"name", "id_number_masked", "sex", "birth_date", "region_code", "scheme"}


# --- What a partner does with only the contract ------------------------------------------------


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def payload_of(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[1]))


def verify_offline(token: str, published_keys: dict[str, str], *, now: float | None = None) -> dict:
    """Check a token as a partner would with only `GET /keys` (5 s of clock leeway); raise if not valid."""
    version, payload_part, signature_part = token.split(".")
    assert version == "v1"
    payload = json.loads(b64url_decode(payload_part))
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(published_keys[payload["kid"]]))
    public.verify(b64url_decode(signature_part), f"v1.{payload_part}".encode("ascii"))
    assert (now or time.time()) <= payload["exp"] + 5
    return payload


# --- Fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def wallet(portal_key, regions, fresh_cache):
    return make_partner_client()


@pytest.fixture
def holder(wallet, make_citizen):
    citizen = make_citizen(name="张三明", with_card=True)
    linkage = link(wallet, citizen)
    return citizen, linkage


def mint(client, linkage_id: str, payload: dict | None = None):
    return client.post(f"/api/v1/linkages/{linkage_id}/qr-tokens", {} if payload is None else payload)


def minted(client, linkage_id: str, payload: dict | None = None) -> dict:
    response = mint(client, linkage_id, payload)
    assert response.status == 201, response.body
    return response.json()


def verify(client, token):
    return client.post("/api/v1/certificates/verify", {"token": token})


def problem(response, status: int, code: str) -> dict:
    assert response.status == status, response.body
    assert response.signature_valid
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    return response.json()


def make_binding(wallet, linkage: dict, beneficiary, *, state: str = "active") -> FamilyBinding:
    linkage_row = WalletLinkage.objects.get(public_id=linkage["id"])
    activate_card(beneficiary)
    return FamilyBinding.objects.create(
        partner=partner_of(wallet),
        holder_linkage=linkage_row,
        holder_citizen=linkage_row.citizen,
        beneficiary=beneficiary,
        relationship="parent",
        consent_reference="consent-1",
        state=state,
    )


# --- Minting ----------------------------------------------------------------------------------


def test_a_minted_token_has_the_contract_format_and_lives_60_seconds(wallet, holder):
    citizen, linkage = holder
    response = mint(wallet, linkage["id"])
    assert response.status == 201 and response.signature_valid
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    token = body["token"]
    assert TOKEN_RE.match(token)
    payload_part = token.split(".")[1]
    payload = payload_of(token)
    assert list(payload) == ["kid", "cn", "lnk", "fb", "jti", "iat", "exp"]
    assert b64url_decode(payload_part) == json.dumps(payload, separators=(",", ":")).encode()  # compact JSON
    assert payload["kid"] == keys.current_signing_key().key_id
    assert payload["cn"] == citizen.current_certificate().number == linkage["certificate"]["number"]
    assert payload["lnk"] == linkage["id"]
    assert payload["fb"] is None
    assert payload["exp"] - payload["iat"] == 60
    assert abs(payload["iat"] - time.time()) < 5
    assert body["expires_at"].endswith("+08:00")
    assert datetime.fromisoformat(body["expires_at"]).timestamp() == payload["exp"]
    assert QrToken.objects.filter(jti=payload["jti"], linkage__public_id=linkage["id"]).exists()


def test_a_partner_verifies_a_token_offline_with_only_the_published_key(wallet, holder):
    _, linkage = holder
    token = minted(wallet, linkage["id"])["token"]
    published = {k["key_id"]: k["public_key"] for k in json.loads(wallet.get("/api/v1/keys", sign=False).body)["keys"]}
    payload = verify_offline(token, published)
    assert payload["lnk"] == linkage["id"]
    # A forged payload under the real signature fails the same check.
    version, payload_part, signature_part = token.split(".")
    forged = dict(payload, cn="000000000000")
    forged_token = f"{version}.{b64url(json.dumps(forged, separators=(',', ':')).encode())}.{signature_part}"
    with pytest.raises(InvalidSignature):
        verify_offline(forged_token, published)


def test_an_earlier_token_stays_valid_after_a_new_one_is_minted(wallet, holder):
    _, linkage = holder
    first = minted(wallet, linkage["id"])["token"]
    second = minted(wallet, linkage["id"])["token"]
    assert first != second
    assert verify(wallet, first).status == 200
    assert verify(wallet, second).status == 200


def test_minting_for_an_unlinked_linkage_answers_linkage_inactive(wallet, holder):
    _, linkage = holder
    wallet.post(f"/api/v1/linkages/{linkage['id']}/unlink", {"reason": "citizen_request"})
    problem(mint(wallet, linkage["id"]), 409, "linkage_inactive")


def test_minting_for_a_suspended_card_answers_certificate_not_active(wallet, holder, system_actor):
    citizen, linkage = holder
    insurance_services.certificate_suspend(actor=system_actor, certificate=citizen.current_certificate(), reason="r")
    problem(mint(wallet, linkage["id"]), 409, "certificate_not_active")
    assert not QrToken.objects.exists()


def test_minting_through_another_partners_linkage_answers_not_found(wallet, make_citizen):
    theirs = link(make_partner_client(), make_citizen(with_card=True))
    problem(mint(wallet, theirs["id"]), 404, "not_found")
    problem(mint(wallet, "lnk_unknown"), 404, "not_found")


@pytest.mark.parametrize("payload", [{"family_binding_id": 5}, {"fb": "fbd_x"}, {"family_binding_id": "f" * 41}])
def test_a_bad_mint_body_answers_validation_error(wallet, holder, payload):
    _, linkage = holder
    problem(mint(wallet, linkage["id"], payload), 400, "validation_error")


def test_a_null_family_binding_mints_for_the_holder(wallet, holder):
    _, linkage = holder
    assert payload_of(minted(wallet, linkage["id"], {"family_binding_id": None})["token"])["fb"] is None


# --- Family bindings --------------------------------------------------------------------------


def test_a_binding_token_carries_the_beneficiarys_card_and_verifies_with_who_presented_it(wallet, holder, make_citizen):
    citizen, linkage = holder
    parent = make_citizen(name="李四", with_card=True)
    binding = make_binding(wallet, linkage, parent)
    token = minted(wallet, linkage["id"], {"family_binding_id": binding.public_id})["token"]
    payload = payload_of(token)
    assert payload["fb"] == binding.public_id
    assert payload["cn"] == parent.current_certificate().number
    body = verify(wallet, token).json()
    assert body["certificate_number"] == parent.current_certificate().number
    assert body["citizen"]["name"] == "李四"
    assert body["presented_by"] == {"relationship": "parent", "holder_name_masked": "张*明"}


@pytest.mark.parametrize("state", ["pending", "revoked", "rejected"])
def test_a_binding_that_is_not_active_answers_binding_inactive(wallet, holder, make_citizen, state):
    _, linkage = holder
    binding = make_binding(wallet, linkage, make_citizen(with_card=True), state=state)
    problem(mint(wallet, linkage["id"], {"family_binding_id": binding.public_id}), 409, "binding_inactive")


def test_a_beneficiary_with_a_suspended_card_answers_certificate_not_active(wallet, holder, make_citizen, system_actor):
    _, linkage = holder
    parent = make_citizen(with_card=True)
    binding = make_binding(wallet, linkage, parent)
    insurance_services.certificate_suspend(actor=system_actor, certificate=parent.current_certificate(), reason="r")
    problem(mint(wallet, linkage["id"], {"family_binding_id": binding.public_id}), 409, "certificate_not_active")


def test_a_binding_made_through_another_linkage_answers_not_found(wallet, holder, make_citizen):
    _, linkage = holder
    other_linkage = link(wallet, make_citizen(with_card=True))
    binding = make_binding(wallet, other_linkage, make_citizen(with_card=True))
    problem(mint(wallet, linkage["id"], {"family_binding_id": binding.public_id}), 404, "not_found")
    problem(mint(wallet, linkage["id"], {"family_binding_id": "fbd_unknown"}), 404, "not_found")


# --- Verification -----------------------------------------------------------------------------


def test_verifying_answers_the_card_and_the_citizens_full_name(wallet, holder):
    citizen, linkage = holder
    token = minted(wallet, linkage["id"])["token"]
    response = verify(wallet, token)
    assert response.status == 200 and response.signature_valid
    body = response.json()
    assert set(body) == VERIFY_FIELDS
    assert set(body["citizen"]) == VERIFIED_CITIZEN_FIELDS
    assert body["certificate_number"] == linkage["certificate"]["number"]
    assert body["state"] == "active"
    assert body["token_used"] is False
    assert body["presented_by"] is None
    assert body["citizen"] == {
        "name": "张三明",
        "id_number_masked": citizen.id_number_masked,
        "sex": citizen.sex,
        "birth_date": citizen.birth_date.isoformat(),
        "region_code": "310000",
        "scheme": "resident",
    }
    assert datetime.fromisoformat(body["token_expires_at"]).timestamp() == payload_of(token)["exp"]
    assert citizen.id_number not in response.body.decode()


def test_a_service_platform_verifies_a_wallets_token(wallet, holder):
    _, linkage = holder
    token = minted(wallet, linkage["id"])["token"]
    platform = make_partner_client(PartnerKind.SERVICE_PLATFORM)
    assert verify(platform, token).status == 200


def test_verifying_reports_the_cards_current_state_and_whether_the_token_was_used(wallet, holder, system_actor):
    citizen, linkage = holder
    token = minted(wallet, linkage["id"])["token"]
    insurance_services.certificate_suspend(actor=system_actor, certificate=citizen.current_certificate(), reason="r")
    QrToken.objects.filter(jti=payload_of(token)["jti"]).update(used_at=timezone.now())
    body = verify(wallet, token).json()
    assert body["state"] == "suspended"
    assert body["token_used"] is True


def test_a_token_minted_over_60_seconds_ago_answers_token_expired(wallet, holder):
    _, linkage = holder
    row = WalletLinkage.objects.get(public_id=linkage["id"])
    old = qr.qr_token_mint(actor=Actor.system("tests"), linkage=row, now=timezone.now() - timedelta(seconds=61))
    problem(verify(wallet, old.token), 422, "token_expired")
    # Tampered and expired: not authentic comes first.
    problem(verify(wallet, old.token[:-2] + ("AA" if not old.token.endswith("AA") else "BB")), 422, "invalid_token")


def test_tokens_minted_before_a_key_rotation_still_verify(wallet, holder):
    _, linkage = holder
    before = minted(wallet, linkage["id"])["token"]
    keys.portal_key_create(actor=Actor.system("tests"))
    keys.portal_key_activate_next(actor=Actor.system("tests"))
    after = minted(wallet, linkage["id"])["token"]
    assert payload_of(before)["kid"] != payload_of(after)["kid"]
    wallet.fetch_portal_keys()
    assert verify(wallet, before).status == 200
    assert verify(wallet, after).status == 200
    published = {k["key_id"]: k["public_key"] for k in json.loads(wallet.get("/api/v1/keys", sign=False).body)["keys"]}
    verify_offline(before, published)


def _forge(payload: dict, private_key: Ed25519PrivateKey) -> str:
    head = "v1." + b64url(json.dumps(payload, separators=(",", ":")).encode())
    return f"{head}.{b64url(private_key.sign(head.encode()))}"


def test_a_token_signed_by_anyone_but_the_portal_answers_invalid_token(wallet, holder):
    _, linkage = holder
    payload = payload_of(minted(wallet, linkage["id"])["token"])
    problem(verify(wallet, _forge(payload, Ed25519PrivateKey.generate())), 422, "invalid_token")
    problem(verify(wallet, _forge(dict(payload, kid="attacker"), Ed25519PrivateKey.generate())), 422, "invalid_token")


def _nested(depth: int) -> str:
    return "v1." + b64url(("[" * depth + "]" * depth).encode()) + "." + b64url(b"\0" * 64)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "nonsense",
        "v1.a.b",
        "v1..",
        "v1.a.b.c",
        "v2.e30.AAAA",
        "v1.中文.签名",
        "x" * 100_000,
        "v1.e30." + b64url(b"\0" * 64),
        "v1.bnVsbA." + b64url(b"\0" * 64),
        _nested(100_000),
        _nested(700),
    ],
)
def test_anything_that_is_not_an_authentic_token_answers_invalid_token(wallet, holder, token):
    problem(verify(wallet, token), 422, "invalid_token")


@pytest.mark.parametrize("change", ["payload", "signature", "padding", "version", "swap_jti"])
def test_a_tampered_token_answers_invalid_token(wallet, holder, change):
    _, linkage = holder
    token = minted(wallet, linkage["id"])["token"]
    version, payload_part, signature_part = token.split(".")
    if change == "payload":
        payload = dict(payload_of(token), exp=payload_of(token)["exp"] + 3600)
        token = f"{version}.{b64url(json.dumps(payload, separators=(',', ':')).encode())}.{signature_part}"
    elif change == "signature":
        raw = bytearray(b64url_decode(signature_part))
        raw[0] ^= 1
        token = f"{version}.{payload_part}.{b64url(bytes(raw))}"
    elif change == "padding":
        token = f"{version}.{payload_part}.{signature_part}=="
    elif change == "version":
        token = f"V1.{payload_part}.{signature_part}"
    else:  # another token's payload under this token's signature
        other = minted(wallet, linkage["id"])["token"]
        token = f"{version}.{other.split('.')[1]}.{signature_part}"
    problem(verify(wallet, token), 422, "invalid_token")


def test_verify_requires_a_string_token(wallet):
    problem(verify(wallet, None), 400, "validation_error")
    problem(wallet.post("/api/v1/certificates/verify", {}), 400, "validation_error")
