"""Setting up partners, portal keys and citizens for the partner API tests (tests only call the API
through tests/partner_client.py; these helpers only build the data a test starts from)."""

import secrets

import pytest
from django.test import Client

from insurance import services as insurance_services
from payments import keys
from payments.models import Partner, PartnerKey, PartnerKind
from portal.actors import Actor
from tests.partner_client import PartnerClient, new_key_pair


@pytest.fixture
def portal_key(db):
    keys._forget_cached_key()
    key = keys.portal_key_create(actor=Actor.system("tests"))
    yield key
    keys._forget_cached_key()


def make_partner_client(kind: str = PartnerKind.WALLET, *, base_url: str | None = None) -> PartnerClient:
    code = f"p{secrets.token_hex(4)}"
    partner = Partner.objects.create(code=code, name=code, kind=kind)
    private, public = new_key_pair()
    key = PartnerKey.objects.create(partner=partner, key_id=f"{code}-key", public_key=public)
    if base_url is not None:
        return PartnerClient(key_id=key.key_id, private_key=private, base_url=base_url)
    return PartnerClient(key_id=key.key_id, private_key=private, django_client=Client())


def partner_of(client: PartnerClient) -> Partner:
    return PartnerKey.objects.select_related("partner").get(key_id=client.key_id).partner


def idem_key() -> str:
    return "idem-" + secrets.token_hex(8)


def link_payload(citizen, *, ref: str | None = None, name: str | None = None) -> dict:
    return {
        "id_number": citizen.id_number,
        "name": name if name is not None else citizen.name,
        "partner_user_ref": ref or f"user-{secrets.token_hex(6)}",
        "verification_reference": f"face-{secrets.token_hex(6)}",
    }


def link(client: PartnerClient, citizen, **kwargs) -> dict:
    """Link the citizen through the API (the happy path); returns the Linkage."""
    response = client.post("/api/v1/linkages", link_payload(citizen, **kwargs), idempotency_key=idem_key())
    assert response.status == 201, response.body
    return response.json()


def activate_card(citizen):
    card = citizen.current_certificate()
    return insurance_services.certificate_activate(actor=Actor.system("tests"), certificate=card)


@pytest.fixture
def fresh_cache():
    """Our own Redis db: forget counters left by an earlier run whose partner ids may repeat."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
