"""`/api/v1/family-bindings` as a wallet partner sees it, through testkit/partner_client.py."""

import secrets

import pytest
from django.test import Client

from payments.bindings import services as bindings
from payments.models import FamilyBinding, PartnerKey, PartnerKind
from portal.actors import Actor
from portal.models import Role
from testkit.bindings import BINDING_KEYS, bind, link, make_wallet, register
from testkit.partner_client import PartnerClient, new_key_pair

pytestmark = pytest.mark.django_db


def client_for(partner) -> PartnerClient:
    private, public = new_key_pair()
    key = PartnerKey.objects.create(partner=partner, key_id=f"{partner.code}-key", public_key=public)
    return PartnerClient(key_id=key.key_id, private_key=private, django_client=Client())


@pytest.fixture
def world(portal_key, regions):
    wechat, alipay = make_wallet("wechat"), make_wallet("alipay")
    holder, _ = register(regions, name="张三明")
    parent, parent_number = register(regions, "220000", name="李四")
    return {
        "wechat": wechat,
        "alipay": alipay,
        "api": client_for(wechat),
        "alipay_api": client_for(alipay),
        "holder": holder,
        "linkage": link(wechat, holder),
        "parent": parent,
        "number": parent_number,
        "regions": regions,
    }


def create(api: PartnerClient, payload: dict):
    return api.post("/api/v1/family-bindings", payload, idempotency_key=secrets.token_hex(8))


def payload(world, **changes) -> dict:
    body = {
        "holder_linkage_id": world["linkage"].public_id,
        "beneficiary_id_number": world["number"],
        "beneficiary_name": "李四",
        "relationship": "parent",
        "consent_reference": "consent-2024-001",
    }
    body.update(changes)
    return body


def test_a_wallet_creates_a_pending_binding_and_reads_it_back(world):
    response = create(world["api"], payload(world))

    assert response.status == 201, response.body
    assert response.signature_valid
    body = response.json()
    assert set(body) == BINDING_KEYS
    assert body["id"].startswith("fbd_") and len(body["id"]) <= 40
    assert (body["state"], body["version"], body["end_reason"], body["ended_at"]) == ("pending", 1, None, None)
    assert body["holder_linkage_id"] == world["linkage"].public_id
    assert body["beneficiary"]["name_masked"] == "李*"
    assert body["beneficiary_certificate"]["state"] == "pending_activation"
    assert "李四" not in response.body.decode() and world["number"] not in response.body.decode()

    detail = world["api"].get(f"/api/v1/family-bindings/{body['id']}")
    assert detail.status == 200 and detail.json() == body


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"beneficiary_name": "李五"}, 422, "identity_mismatch"),
        ({"beneficiary_id_number": "110101199001011234"}, 422, "identity_mismatch"),
        ({"relationship": "friend"}, 400, "validation_error"),
        ({"consent_reference": "x" * 129}, 400, "validation_error"),
        ({"extra": 1}, 400, "validation_error"),
        ({"holder_linkage_id": "lnk_doesnotexist"}, 404, "not_found"),
    ],
)
def test_bad_requests_get_their_contract_codes(world, change, status, code):
    response = create(world["api"], payload(world, **change))

    assert (response.status, response.code) == (status, code), response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.signature_valid
    assert not FamilyBinding.objects.exists()


def test_the_holder_as_beneficiary_is_a_validation_error(world):
    response = create(
        world["api"], payload(world, beneficiary_id_number=world["holder"].id_number, beneficiary_name="张三明")
    )
    assert (response.status, response.code) == (400, "validation_error")
    assert "beneficiary_id_number" in response.json()["errors"]


def test_conflicts_certificate_unavailable_binding_exists_and_the_limit(world):
    _, no_card = register(world["regions"], "220000", name="李四", card=False)
    assert create(world["api"], payload(world, beneficiary_id_number=no_card)).code == "certificate_unavailable"

    first = create(world["api"], payload(world)).json()
    again = create(world["api"], payload(world))
    assert (again.status, again.code, again.json()["family_binding_id"]) == (409, "binding_exists", first["id"])

    for _ in range(4):
        _, number = register(world["regions"], "220000", name="李四")
        assert create(world["api"], payload(world, beneficiary_id_number=number)).status == 201
    _, sixth = register(world["regions"], "220000", name="李四")
    limit = create(world["api"], payload(world, beneficiary_id_number=sixth))
    assert (limit.status, limit.code) == (409, "binding_limit_reached")


def test_another_partners_holder_linkage_and_binding_answer_not_found(world):
    mine = create(world["api"], payload(world)).json()

    assert create(world["alipay_api"], payload(world)).code == "not_found"
    assert world["alipay_api"].get(f"/api/v1/family-bindings/{mine['id']}").status == 404
    revoke = world["alipay_api"].post(f"/api/v1/family-bindings/{mine['id']}/revoke", {})
    assert (revoke.status, revoke.code) == (404, "not_found")
    listed = world["alipay_api"].get(f"/api/v1/family-bindings?holder_linkage_id={world['linkage'].public_id}")
    assert (listed.status, listed.code) == (404, "not_found")
    assert world["alipay_api"].get("/api/v1/family-bindings").json()["results"] == []
    assert FamilyBinding.objects.get().state == "pending"


def test_a_service_platform_is_forbidden(world):
    platform = make_wallet("platform", kind=PartnerKind.SERVICE_PLATFORM)
    api = client_for(platform)

    assert (api.get("/api/v1/family-bindings").status, api.get("/api/v1/family-bindings").code) == (403, "forbidden")
    assert create(api, payload(world)).code == "forbidden"


def test_the_list_filters_by_holder_linkage_and_state_and_pages_oldest_first(world, make_user):
    made = []
    for _ in range(3):
        _, number = register(world["regions"], "220000", name="李四")
        made.append(bind(world["wechat"], world["linkage"], number))
    bindings.family_binding_reject(actor=Actor.for_user(make_user(Role.CLERK, ("220000",))), binding=made[1], note="no")
    other_holder, _ = register(world["regions"], name="孙八")
    other_linkage = link(world["wechat"], other_holder)
    bind(world["wechat"], other_linkage, world["number"])
    api = world["api"]

    first = api.get(f"/api/v1/family-bindings?holder_linkage_id={world['linkage'].public_id}&limit=2").json()
    assert [b["id"] for b in first["results"]] == [made[0].public_id, made[1].public_id]
    second = api.get(
        f"/api/v1/family-bindings?holder_linkage_id={world['linkage'].public_id}&limit=2&cursor={first['next_cursor']}"
    ).json()
    assert [b["id"] for b in second["results"]] == [made[2].public_id]
    assert second["next_cursor"] is None

    pending = api.get(f"/api/v1/family-bindings?holder_linkage_id={world['linkage'].public_id}&state=pending").json()
    assert [b["id"] for b in pending["results"]] == [made[0].public_id, made[2].public_id]
    assert len(api.get("/api/v1/family-bindings").json()["results"]) == 4

    assert api.get("/api/v1/family-bindings?state=ended").code == "validation_error"
    assert api.get("/api/v1/family-bindings?limit=0").code == "validation_error"
    assert api.get("/api/v1/family-bindings?cursor=!!").code == "validation_error"


def test_revoking_answers_the_revoked_binding_and_a_second_revoke_returns_it_unchanged(world):
    created = create(world["api"], payload(world)).json()

    first = world["api"].post(f"/api/v1/family-bindings/{created['id']}/revoke", {})
    second = world["api"].post(f"/api/v1/family-bindings/{created['id']}/revoke")

    assert first.status == 200, first.body
    assert (first.json()["state"], first.json()["end_reason"], first.json()["version"]) == (
        "revoked",
        "partner_request",
        2,
    )
    assert second.status == 200 and second.json() == first.json()
    bad = world["api"].post(f"/api/v1/family-bindings/{created['id']}/revoke", {"reason": "clerk"})
    assert bad.code == "validation_error"


def test_an_unknown_binding_id_is_not_found(world):
    response = world["api"].get("/api/v1/family-bindings/fbd_nope")
    assert (response.status, response.code) == (404, "not_found")


def test_creating_requires_an_idempotency_key_and_a_retry_gets_the_first_answer_without_a_second_binding(world):
    missing = world["api"].post("/api/v1/family-bindings", payload(world))
    assert (missing.status, missing.code) == (400, "idempotency_key_required")

    first = world["api"].post("/api/v1/family-bindings", payload(world), idempotency_key="bind-1")
    retry = world["api"].post("/api/v1/family-bindings", payload(world), idempotency_key="bind-1")

    assert (first.status, retry.status) == (201, 201)
    assert retry.body == first.body
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.signature_valid
    assert FamilyBinding.objects.count() == 1
