"""Portal signing keys: rotation, encryption at rest, GET /api/v1/keys and signed responses."""

import json

import pytest
from django.core.management import CommandError, call_command

from payments import keys, signing
from payments.models import PortalKey, PortalKeyState
from portal.audit import verify_chain
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    keys._forget_cached_key()
    yield
    keys._forget_cached_key()


def rotate(*args: str) -> dict:
    from io import StringIO

    out = StringIO()
    call_command("rotate_portal_key", *args, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_first_rotation_creates_an_active_key_and_the_next_one_a_next_key():
    first = rotate()
    second = rotate()
    assert first["state"] == "active" and second["state"] == "next"
    assert PortalKey.objects.get(key_id=first["key_id"]).activated_at is not None


def test_rotating_twice_without_activating_is_refused():
    rotate()
    rotate()
    with pytest.raises(CommandError):
        rotate()
    assert PortalKey.objects.count() == 2


def test_activate_makes_next_active_and_retires_the_old_key():
    first = rotate()
    second = rotate()
    assert rotate("--activate") == {"key_id": second["key_id"], "state": "active"}
    states = dict(PortalKey.objects.values_list("key_id", "state"))
    assert states == {first["key_id"]: "retired", second["key_id"]: "active"}
    assert PortalKey.objects.get(key_id=first["key_id"]).retired_at is not None


def test_activate_without_a_next_key_is_refused():
    rotate()
    with pytest.raises(CommandError):
        rotate("--activate")


def test_each_rotation_is_audited_by_the_system_actor():
    rotate()
    rotate()
    rotate("--activate")
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", "actor_type", "actor_label"))
    assert [a for a, _, _ in actions] == [
        "portal_key.create",
        "portal_key.create",
        "portal_key.retire",
        "portal_key.activate",
    ]
    assert {(t, label) for _, t, label in actions} == {("system", "rotate_portal_key")}
    assert verify_chain() == []


def test_private_key_is_stored_encrypted_and_bound_to_its_key_id():
    rotate()
    row = PortalKey.objects.get()
    raw = keys.decrypt_private_key(row.private_key_enc, key_id=row.key_id)
    assert raw not in bytes(row.private_key_enc)
    assert signing.public_key_b64(signing.private_key_from_raw(raw)) == row.public_key
    with pytest.raises(Exception):  # noqa: B017 - AES-GCM refuses the ciphertext under another key id
        keys.decrypt_private_key(row.private_key_enc, key_id="someone-else")


def test_current_signing_key_notices_a_rotation_made_elsewhere_within_the_cache_time(monkeypatch):
    rotate()
    rotate()
    old = keys.current_signing_key().key_id
    monkeypatch.setattr(keys, "CACHE_SECONDS", 0.2)
    keys._forget_cached_key()
    assert keys.current_signing_key().key_id == old
    # Another process activates: this process's cache is not told.
    monkeypatch.setattr(keys, "_forget_cached_key", lambda: None)
    new = keys.portal_key_activate_next(actor=keys.Actor.system("tests")).key_id
    assert keys.current_signing_key().key_id == old
    import time

    time.sleep(0.25)
    assert keys.current_signing_key().key_id == new


def test_keys_endpoint_lists_every_key_in_the_contract_shape(client):
    rotate()
    rotate()
    rotate("--activate")
    rotate()
    response = client.get("/api/v1/keys")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["keys"]
    rows = PortalKey.objects.order_by("created_at", "id")
    assert body["keys"] == [
        {"key_id": k.key_id, "algorithm": "Ed25519", "public_key": k.public_key, "state": k.state} for k in rows
    ]
    assert [k["state"] for k in body["keys"]] == ["retired", "active", "next"]


def test_keys_response_is_signed_by_the_active_key_in_the_response_form(client):
    rotate()
    response = client.get("/api/v1/keys")
    active = PortalKey.objects.get(state=PortalKeyState.ACTIVE)
    assert response["Ecard-Key-Id"] == active.key_id
    assert signing.NONCE_RE.match(response["Ecard-Nonce"])
    message = signing.response_string_to_sign(
        200, "", response["Ecard-Timestamp"], response["Ecard-Nonce"], response.content
    )
    assert signing.verify(active.public_key, message, response["Ecard-Signature"])
    tampered = signing.response_string_to_sign(
        201, "", response["Ecard-Timestamp"], response["Ecard-Nonce"], response.content
    )
    assert not signing.verify(active.public_key, tampered, response["Ecard-Signature"])


def test_response_signature_carries_the_request_nonce_when_there_is_one(client):
    rotate()
    nonce = "Req_nonce-0123456789"
    response = client.get(
        "/api/v1/keys", HTTP_AUTHORIZATION=f'ECARD-ED25519 key_id="k",timestamp="1",nonce="{nonce}",signature="x"'
    )
    public = PortalKey.objects.get().public_key
    message = signing.response_string_to_sign(
        200, nonce, response["Ecard-Timestamp"], response["Ecard-Nonce"], response.content
    )
    assert signing.verify(public, message, response["Ecard-Signature"])


def test_keys_endpoint_without_any_key_answers_a_problem_not_a_500(client):
    response = client.get("/api/v1/keys")
    assert response.status_code == 503
    assert response.json()["code"] == "no_signing_key"


def test_keys_endpoint_refuses_post_with_a_signed_error(client):
    rotate()
    response = client.post("/api/v1/keys", data="{}", content_type="application/json")
    assert response.status_code == 405
    assert response["Ecard-Key-Id"]
