"""One identity-mismatch limit for `POST /linkages`, `/family-bindings` and `/premiums`
(PARTNER_API.md "Identity mismatches"): ten `identity_mismatch` answers within a minute, counted
together, then 429 `rate_limited` from all three; concurrent requests never let more than ten
mismatches through."""

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client

from payments.api.base import IDENTITY_MISMATCHES_PER_MINUTE, _mismatch_key, identity_checked
from payments.api.problems import ApiError
from payments.models import Partner, PartnerKey
from portal import fastcache
from testkit.api import idem_key, link_payload
from testkit.bindings import link, make_wallet, register
from testkit.citizens import new_id_number
from testkit.partner_client import PartnerClient, new_key_pair

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(portal_key, regions, fresh_cache):
    wechat = make_wallet("wechat")
    private, public = new_key_pair()
    key = PartnerKey.objects.create(partner=wechat, key_id="wechat-key", public_key=public)
    holder, _ = register(regions, name="张三明")
    parent, parent_number = register(regions, "220000", name="李四")
    return {
        "api": PartnerClient(key_id=key.key_id, private_key=private, django_client=Client()),
        "holder": holder,
        "linkage": link(wechat, holder),
        "parent_number": parent_number,
    }


def bind(world, name: str = "李四"):
    body = {
        "holder_linkage_id": world["linkage"].public_id,
        "beneficiary_id_number": world["parent_number"],
        "beneficiary_name": name,
        "relationship": "parent",
        "consent_reference": "consent-1",
    }
    return world["api"].post("/api/v1/family-bindings", body, idempotency_key=idem_key())


def link_wrong(world):
    payload = link_payload(world["holder"], name="某某某")
    return world["api"].post("/api/v1/linkages", payload, idempotency_key=idem_key())


def premium_wrong(world):
    body = {"id_number": new_id_number(), "name": "王小明", "year": 2026, "amount_fen": 38_000}
    body["partner_transaction_id"] = f"wx-{secrets.token_hex(4)}"
    return world["api"].post("/api/v1/premiums", body, idempotency_key=idem_key())


def codes(responses) -> list[tuple[int, str]]:
    return [(r.status, r.json()["code"]) for r in responses]


def test_after_ten_linkage_mismatches_a_binding_with_a_true_identity_answers_rate_limited(world):
    assert codes(link_wrong(world) for _ in range(10)) == [(422, "identity_mismatch")] * 10
    limited = bind(world)
    assert (limited.status, limited.json()["code"]) == (429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_binding_mismatches_count_toward_the_linkages_limit(world):
    assert codes(bind(world, name="李五") for _ in range(10)) == [(422, "identity_mismatch")] * 10
    limited = world["api"].post("/api/v1/linkages", link_payload(world["holder"]), idempotency_key=idem_key())
    assert (limited.status, limited.json()["code"]) == (429, "rate_limited")


def test_the_three_endpoints_share_one_count(world):
    answers = [link_wrong(world) for _ in range(4)]
    answers += [premium_wrong(world) for _ in range(3)]
    answers += [bind(world, name="李五") for _ in range(3)]
    assert codes(answers) == [(422, "identity_mismatch")] * 10
    for limited in (link_wrong(world), premium_wrong(world), bind(world)):
        assert (limited.status, limited.json()["code"]) == (429, "rate_limited")


def test_concurrent_mismatches_never_count_more_than_the_limit(fresh_cache):
    """Forty mismatches at once: ten are counted (422), thirty answer 429 instead."""
    partner = Partner(pk=900_000 + secrets.randbelow(99_999))
    fastcache.forget(_mismatch_key(partner))
    start = threading.Barrier(40)

    def one_mismatch(_: int) -> str:
        start.wait()
        try:
            with identity_checked(partner):
                raise ApiError(422, "identity_mismatch", "no match")
        except ApiError as exc:
            return "counted" if exc.problem_code == "identity_mismatch" else exc.problem_code
        return "matched"

    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = list(pool.map(one_mismatch, range(40)))
    assert outcomes.count("counted") == IDENTITY_MISMATCHES_PER_MINUTE
    assert outcomes.count("rate_limited") == 40 - IDENTITY_MISMATCHES_PER_MINUTE
