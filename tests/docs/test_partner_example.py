"""docs/examples/partner_example.py, run against a live portal so that the partner guide stays true."""

import importlib.util
import time
from pathlib import Path

import httpx
import pytest
from werkzeug import Response

from payments import keys
from payments.delivery import services as delivery
from payments.linkages import services
from payments.models import OutboxEvent, PartnerKind
from payments.partners import services as partners
from portal.actors import Actor

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "partner_example.py"

pytestmark = pytest.mark.django_db(transaction=True)


def load_example():
    spec = importlib.util.spec_from_file_location("partner_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example():
    return load_example()


@pytest.fixture
def portal_key(transactional_db):
    keys._forget_cached_key()
    key = keys.portal_key_create(actor=Actor.system("tests"))
    yield key
    keys._forget_cached_key()


@pytest.fixture
def integration(example, portal_key, live_server, httpserver, make_citizen):
    """A wallet registered the way operators do, with a key made by the example, and a linked citizen."""
    actor = Actor.system("tests")
    partner = partners.partner_create(
        actor=actor,
        code="examplepay",
        name="Example Pay",
        kind=PartnerKind.WALLET,
        webhook_url=httpserver.url_for("/ecard/webhook"),
    )
    private, public_pem = example.new_partner_key()
    key = partners.partner_key_add(actor=actor, partner=partner, public_key=public_pem)
    client = example.PortalClient(live_server.url, key.key_id, private)
    citizen = make_citizen("310000", with_card=True, name="李四光")
    linkage = services.linkage_create(actor=actor, partner=partner, citizen=citizen, partner_user_ref="example-user")
    return client, partner, linkage


def test_the_example_signs_requests_and_verifies_responses(example, integration):
    client, _, _ = integration
    client.refresh_keys(force=True)
    events, cursor = client.events(limit=5)
    assert isinstance(events, list) and cursor
    with pytest.raises(example.PortalError) as error:
        client.request("GET", "/api/v1/events?limit=0")
    assert (error.value.status, error.value.code) == (400, "validation_error")


def test_the_example_rejects_a_response_that_was_tampered_with(example, integration, live_server):
    client, _, _ = integration
    client.refresh_keys(force=True)
    authorization, nonce = example.sign_request(client.private_key, client.key_id, "GET", "/api/v1/events", b"")
    response = httpx.get(live_server.url + "/api/v1/events", headers={"Authorization": authorization})
    assert example.verify_response(client.portal_keys, 200, nonce, response.headers, response.content)
    assert not example.verify_response(client.portal_keys, 200, nonce, response.headers, response.content + b" ")
    assert not example.verify_response(
        client.portal_keys, 200, "another-nonce-1234", response.headers, response.content
    )


def test_a_wrong_private_key_is_refused_by_the_portal(example, integration):
    client, _, _ = integration
    stranger, _ = example.new_partner_key()
    impostor = example.PortalClient(client.base_url, client.key_id, stranger)
    with pytest.raises(example.PortalError) as error:
        impostor.request("GET", "/api/v1/events")
    assert (error.value.status, error.value.code) == (401, "invalid_signature")


def test_the_example_verifies_a_real_webhook_and_finds_the_event_in_the_feed(example, integration, httpserver):
    client, partner, linkage = integration
    httpserver.expect_request("/ecard/webhook", method="POST").respond_with_response(Response("ok", status=200))
    event = OutboxEvent.objects.get(partner=partner, object_id=linkage.public_id)
    assert delivery.deliver_one(event.pk)
    request, _ = httpserver.log[0]
    client.refresh_keys(force=True)
    received = example.verify_webhook(client.portal_keys, request.headers, request.get_data())
    assert (received["id"], received["type"]) == (event.public_id, "linkage.created")
    assert received["data"]["object"]["citizen"]["name_masked"] == "李*光"
    with pytest.raises(ValueError):
        example.verify_webhook(client.portal_keys, request.headers, request.get_data().replace(b"active", b"unlinked"))

    seen: list[dict] = []
    cursor = None
    deadline = time.monotonic() + 60  # the feed may lag while another database's transaction runs
    while not seen and time.monotonic() < deadline:
        seen, cursor = client.events(cursor)
        if not seen:
            time.sleep(0.1)
    assert seen == [received]  # the feed's items are exactly the webhook bodies


def test_the_example_checks_a_qr_token_offline_with_5_seconds_of_leeway(example, integration):
    client, _, linkage = integration
    client.refresh_keys(force=True)
    minted = client.request("POST", f"/api/v1/linkages/{linkage.public_id}/qr-tokens", {})
    payload = example.check_qr_token_offline(minted["token"], client.portal_keys)
    assert payload["lnk"] == linkage.public_id and payload["cn"] == linkage.certificate.number
    assert example.check_qr_token_offline(minted["token"], client.portal_keys, now=payload["exp"] + 5)
    with pytest.raises(ValueError, match="expired"):
        example.check_qr_token_offline(minted["token"], client.portal_keys, now=payload["exp"] + 6)
    head, body, signature = minted["token"].split(".")
    forged = ".".join([head, body[:-2] + ("AA" if body[-2:] != "AA" else "BB"), signature])
    with pytest.raises(ValueError):
        example.check_qr_token_offline(forged, client.portal_keys)
    with pytest.raises(ValueError, match="unknown portal key"):
        example.check_qr_token_offline(minted["token"], {})
    with pytest.raises(ValueError):
        example.check_qr_token_offline("not-a-token", client.portal_keys)
