"""The verify path's shortcuts answer exactly what the general path did (docs/benchmarks-verify.md):
the key read by prepared SQL, the nonce and rate counter in one Redis round trip, the token read as one
narrow row, the response rendered without DRF's renderer."""

import json
import secrets

import pytest
from django.core.cache import cache

from payments.api.auth import _record_nonce_and_count, partner_key_lookup, rate_key
from payments.models import FamilyBinding, PartnerKey, WalletLinkage
from payments.tokens import services as qr
from portal import fastcache
from testkit.api import activate_card, link, make_partner_client, partner_of

pytestmark = pytest.mark.django_db

VERIFY = "/api/v1/certificates/verify"


@pytest.fixture
def wallet(portal_key, regions, fresh_cache):
    return make_partner_client()


@pytest.fixture
def token(wallet, make_citizen) -> str:
    linkage = link(wallet, make_citizen(name="张三明", with_card=True))
    response = wallet.post(f"/api/v1/linkages/{linkage['id']}/qr-tokens", {})
    assert response.status == 201, response.body
    return response.json()["token"]


def test_the_key_read_by_sql_is_the_key_and_partner_the_orm_reads(wallet):
    expected = PartnerKey.objects.select_related("partner").get(key_id=wallet.key_id)
    found = partner_key_lookup(wallet.key_id)
    for field in PartnerKey._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    for field in type(expected.partner)._meta.concrete_fields:
        assert getattr(found.partner, field.attname) == getattr(expected.partner, field.attname), field.name
    assert not found._state.adding and not found.partner._state.adding
    assert partner_key_lookup("no-such-key") is None
    assert partner_key_lookup("nul\x00key") is None


def test_a_replayed_nonce_is_not_counted_against_the_rate_limit(wallet):
    partner = partner_of(wallet)
    nonce_key = f"nonce:test:{secrets.token_hex(8)}"
    counter = rate_key(partner.pk, 1_000_000)  # a second of its own: no other request counts in it
    assert _record_nonce_and_count(nonce_key, counter)[0] == 1
    assert _record_nonce_and_count(nonce_key, counter)[0] is None  # replayed
    assert _record_nonce_and_count(f"nonce:test:{secrets.token_hex(8)}", counter)[0] == 2
    assert _record_nonce_and_count(f"nonce:test:{secrets.token_hex(8)}", None)[0] == 0  # recorded, not counted
    # the counter expires like the one api_base counts into
    assert 0 < fastcache.redis_client().ttl(cache.make_key(counter)) <= 3


def test_a_verify_body_other_than_one_token_string_gets_the_serializers_errors(wallet, token):
    for body, field in [
        ({"token": 5}, "token"),
        ({"token": None}, "token"),
        ({}, "token"),
        ({"token": token, "extra": 1}, "extra"),
    ]:
        response = wallet.post(VERIFY, body)
        assert response.status == 400, body
        assert response.signature_valid
        assert field in response.json()["errors"], body


def test_the_verify_body_is_what_drfs_renderer_gives(wallet, token):
    plain = wallet.post(VERIFY, {"token": token})
    indented = wallet.post(VERIFY, {"token": token}, extra_headers={"Accept": "application/json; indent=2"})
    assert plain.status == indented.status == 200
    assert plain.signature_valid and indented.signature_valid
    assert plain.headers["Content-Type"] == "application/json"
    assert json.loads(plain.body) == json.loads(indented.body)
    assert b"\n" in indented.body  # the indented one went through DRF's renderer
    assert plain.body == json.dumps(json.loads(plain.body), ensure_ascii=False, separators=(",", ":")).encode()
    assert "张三明".encode() in plain.body  # UTF-8, not \\u escapes, as JSONRenderer renders


def test_the_narrow_token_read_agrees_with_token_read(wallet, token, make_citizen):
    row = qr.token_read(token)
    found = qr.token_verify_read(token)
    assert found.certificate_number == row.certificate.number
    assert found.certificate_state == row.certificate.state
    assert found.used == (row.used_at is not None)
    assert found.expires_at == row.expires_at
    assert found.citizen_name == row.certificate.citizen.name
    assert found.citizen_id_number_masked == row.certificate.citizen.id_number_masked
    assert found.citizen_birth_date == row.certificate.citizen.birth_date
    assert found.citizen_region_code == row.certificate.citizen.region_id
    assert found.binding_relationship is None and found.binding_holder_name is None


def test_a_binding_token_verifies_with_the_holders_masked_name(wallet, make_citizen):
    holder = make_citizen(name="张三明", with_card=True)
    linkage = link(wallet, holder)
    beneficiary = make_citizen(name="李四", with_card=True)
    activate_card(beneficiary)
    linkage_row = WalletLinkage.objects.get(public_id=linkage["id"])
    binding = FamilyBinding.objects.create(
        partner=partner_of(wallet),
        holder_linkage=linkage_row,
        holder_citizen=linkage_row.citizen,
        beneficiary=beneficiary,
        relationship="parent",
        consent_reference="consent-1",
        state="active",
    )
    minted = wallet.post(f"/api/v1/linkages/{linkage['id']}/qr-tokens", {"family_binding_id": binding.public_id})
    assert minted.status == 201, minted.body
    body = wallet.post(VERIFY, {"token": minted.json()["token"]}).json()
    assert body["presented_by"] == {"relationship": "parent", "holder_name_masked": "张*明"}
    assert body["citizen"]["name"] == "李四"
