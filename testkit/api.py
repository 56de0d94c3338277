"""Partners and their calls for the partner API tests. Tests call the API only through
testkit/partner_client.py; these helpers build the data a test starts from, make the usual
calls and check the usual answers."""

import json
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.test import Client

from insurance import services as insurance_services
from payments.models import Partner, PartnerKey, PartnerKind
from portal.actors import Actor
from testkit.partner_client import PartnerClient, PartnerResponse, new_key_pair


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


def problem(response: PartnerResponse, status: int, code: str) -> dict:
    """The signed problem+json `response` must be, with `status` and `code`."""
    assert response.status == status, response.body
    assert response.signature_valid
    assert response.json()["code"] == code
    return response.json()


def wire_body(payload: dict) -> bytes:
    """The body exactly as testkit/partner_client.py sends it."""
    return json.dumps(payload, ensure_ascii=False).encode()


def sent_eight_at_once(send: Callable[[], object], created: int = 201) -> list:
    """`send()` from eight threads released together, all with the same key: the answers, which must
    be one response (the first, replayed) or `idempotency_key_in_use`, all signed."""
    start = threading.Barrier(8)

    def one(_):
        start.wait(10)
        return send()

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(one, range(8)))
    done = [r for r in responses if r.status == created]
    assert done, [(r.status, r.body) for r in responses]
    assert len({r.body for r in done}) == 1
    for response in responses:
        assert response.signature_valid
        assert response.status == created or response.code == "idempotency_key_in_use", response.body
    return responses


# --- Settlements through the API --------------------------------------------------------------

BILL = [
    {"service_code": "REG", "quantity": 1, "unit_price_fen": 2000},
    {"service_code": "DRUGB", "quantity": 2, "unit_price_fen": 5000},
    {"service_code": "NONCAT", "quantity": 1, "unit_price_fen": 1000},
]


def mint(client: PartnerClient, linkage_id: str) -> str:
    response = client.post(f"/api/v1/linkages/{linkage_id}/qr-tokens", {})
    assert response.status == 201, response.body
    return response.json()["token"]


def settle(client: PartnerClient, tok: str, *, key: str | None = None, bill=None, **extra) -> PartnerResponse:
    body = {"token": tok, "facility_code": "H310-1", "lines": bill or BILL, **extra}
    return client.post("/api/v1/settlements", body, idempotency_key=key or idem_key())


def settled(client: PartnerClient, tok: str, **kwargs) -> dict:
    response = settle(client, tok, **kwargs)
    assert response.status == 201, response.body
    return response.json()


def confirm(client: PartnerClient, settlement: dict, *, key: str | None = None, self_pay: int | None = None):
    body = {
        "partner_transaction_id": "wx-0001",
        "self_pay_fen": settlement["self_pay_fen"] if self_pay is None else self_pay,
    }
    return client.post(f"/api/v1/settlements/{settlement['id']}/confirm", body, idempotency_key=key or idem_key())
