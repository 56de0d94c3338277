"""The partner API does what its published OpenAPI schema says, whatever a partner sends.

schemathesis reads the schema the portal serves at `/api/v1/schema`, generates
valid and invalid requests for every operation in it, signs each one as a
partner would (`ECARD-ED25519` over the exact method, request target and body
bytes that go on the wire, with a fresh nonce), sends it over real HTTP to the
live server and checks the answer: never a 5xx, and status code, content type,
headers and body all as the schema declares (problem+json for every error).

Why real HTTP and not schemathesis's WSGI mode: the signature covers the body
bytes exactly as sent, and only a `requests` auth hook sees the prepared
request after schemathesis has serialised it (`PreparedRequest.body` and
`path_url`); the WSGI transport offers no such point. It also exercises the
server's request-target reconstruction the way a partner meets it.

Seed data is present so that some requests succeed: a wallet partner with a
key, citizens with linked cards, a pending family binding, fresh QR tokens.
Generated path ids and verify tokens are sometimes swapped for real ones.
"""

import itertools
import secrets

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from payments import keys
from payments.bindings.services import family_binding_create
from payments.linkages.services import linkage_create
from payments.models import Partner, PartnerKey, PartnerKind, WalletLinkage
from payments.tokens import services as qr
from portal.actors import Actor
from testkit.citizens import new_id_number
from testkit.partner_client import authorization, new_key_pair

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = Actor.system("tests")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 10  # x ~25 operations, plus schemathesis's coverage cases: several hundred requests


class EcardSignature(requests.auth.AuthBase):
    """Signs the prepared request, i.e. the exact bytes and target `requests` will send."""

    def __init__(self, key_id: str, private_key) -> None:
        self.key_id = key_id
        self.private_key = private_key

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        header, _nonce = authorization(self.private_key, self.key_id, prepared.method, prepared.path_url, body)
        prepared.headers["Authorization"] = header
        return prepared


@pytest.fixture
def seed(regions, live_server, settings):
    """A wallet partner with a key, three citizens with linked cards, a pending binding, a portal key."""
    from django.core.cache import cache

    cache.clear()  # our own Redis db: no nonce or rate counters from an earlier run
    keys._forget_cached_key()
    keys.portal_key_create(actor=SYSTEM)
    partner = Partner.objects.create(
        code="fuzz", name="Fuzz wallet", kind=PartnerKind.WALLET, webhook_url="http://127.0.0.1:9/hook"
    )
    private, public = new_key_pair()
    PartnerKey.objects.create(partner=partner, key_id="fuzz-key", public_key=public)

    from insurance import services as insurance_services

    linkages: list[WalletLinkage] = []
    for index in range(3):
        citizen = insurance_services.citizen_register(
            actor=SYSTEM,
            id_number=new_id_number("310000"),
            name="张三明",
            phone="13800000000",
            region=regions["310000"],
            scheme="resident",
        )
        insurance_services.certificate_issue(actor=SYSTEM, citizen=citizen, reason="fuzz seed")
        linkages.append(
            linkage_create(actor=SYSTEM, partner=partner, citizen=citizen, partner_user_ref=f"fuzz-user-{index}")
        )
    beneficiary_number = new_id_number("310000")
    beneficiary = insurance_services.citizen_register(
        actor=SYSTEM,
        id_number=beneficiary_number,
        name="李四",
        phone="13800000001",
        region=regions["310000"],
        scheme="resident",
    )
    insurance_services.certificate_issue(actor=SYSTEM, citizen=beneficiary, reason="fuzz seed")
    binding = family_binding_create(
        actor=Actor.for_partner(partner.code),
        partner=partner,
        holder_linkage=linkages[0],
        beneficiary_id_number=beneficiary_number,
        beneficiary_name="李四",
        relationship="parent",
        consent_reference="consent-fuzz",
    )
    yield {
        "partner": partner,
        "auth": EcardSignature("fuzz-key", private),
        "linkage_ids": [linkage.public_id for linkage in linkages],
        "binding_ids": [binding.public_id],
        "linkages": linkages,
    }
    keys._forget_cached_key()


@pytest.fixture
def api_schema(seed, live_server):
    """The schema as the portal serves it, with hooks that sometimes use the seeded objects."""
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema")
    schema.config.update(base_url=live_server.url)
    linkage_ids = seed["linkage_ids"]
    real_ids = linkage_ids + seed["binding_ids"]
    tokens = itertools.cycle(seed["linkages"])

    def fresh_token(_ignored) -> str:
        return qr.qr_token_mint(actor=SYSTEM, linkage=next(tokens)).token

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        if not isinstance(path_parameters, dict) or "public_id" not in path_parameters:
            return st.just(path_parameters)
        return st.one_of(
            st.just(path_parameters),
            st.sampled_from(real_ids).map(lambda real: {**path_parameters, "public_id": real}),
        )

    @schema.hook
    def flatmap_body(context, body):
        if context.operation is None or context.operation.path != "/api/v1/certificates/verify":
            return st.just(body)
        return st.one_of(st.just(body), st.just(None).map(lambda none: {"token": fresh_token(none)}))

    @schema.hook
    def flatmap_headers(context, headers):
        # A fresh Idempotency-Key most of the time, so that retried shrinks are not answered 422 as reused.
        if not isinstance(headers, dict) or "Idempotency-Key" not in headers:
            return st.just(headers)
        return st.one_of(
            st.just(headers),
            st.just(None).map(lambda none: {**headers, "Idempotency-Key": "fuzz-" + secrets.token_hex(8)}),
        )

    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says_whatever_a_signed_partner_sends(case, seed):
    case.call_and_validate(auth=seed["auth"], checks=CHECKS, timeout=30)


def test_the_fuzzing_partner_signs_requests_the_portal_accepts(seed, live_server):
    """Guards the test above: a fuzz run where every request answered 401 would prove little."""
    response = requests.get(f"{live_server.url}/api/v1/linkages?limit=10", auth=seed["auth"], timeout=10)
    assert response.status_code == 200, response.text
    assert {item["id"] for item in response.json()["results"]} == set(seed["linkage_ids"])


# --- The benchmark's ceiling endpoint is not part of the API --------------------------------


@pytest.fixture
def api_urls():
    """`api_urls("bench.urls")` serves the rest of the test with that URL conf."""
    from django.test import override_settings

    keys._forget_cached_key()
    keys.portal_key_create(actor=SYSTEM)  # the 404 problem is signed
    overrides = []

    def use(urlconf: str) -> None:
        override = override_settings(ROOT_URLCONF=urlconf)  # Django then clears its URL caches
        override.enable()
        overrides.append(override)

    yield use
    for override in reversed(overrides):
        override.disable()
    keys._forget_cached_key()


def test_the_benchmark_ceiling_endpoint_is_not_mounted_by_the_project_urls(api_urls):
    from django.test import Client
    from django.urls import resolve

    api_urls("backoffice.urls")
    assert resolve("/api/v1/bench/ceiling").url_name == "api-not-found"
    response = Client().get("/api/v1/bench/ceiling")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_the_benchmark_ceiling_endpoint_answers_when_the_benchmark_mounts_it(api_urls):
    from django.test import Client
    from django.urls import resolve

    api_urls("bench.urls")
    assert resolve("/api/v1/bench/ceiling").url_name == "api-bench-ceiling"
    assert Client().post("/api/v1/bench/ceiling", data=b"{}", content_type="application/json").json() == {"ok": True}
    assert "/api/v1/bench/ceiling" not in Client().get("/api/v1/schema").content.decode()
