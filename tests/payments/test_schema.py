"""The published OpenAPI schema and docs agree with PARTNER_API.md and load nothing from elsewhere."""

import json
import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import Resolver404, resolve

from payments import keys
from portal.actors import Actor
from testkit.partner_client import verify_response

# The endpoint table of PARTNER_API.md, copied from the contract (not from the code).
CONTRACT_ENDPOINTS = [
    ("get", "/keys"),
    ("get", "/services"),
    ("get", "/facilities"),
    ("get", "/policies"),
    ("post", "/linkages"),
    ("get", "/linkages"),
    ("get", "/linkages/{id}"),
    ("post", "/linkages/{id}/unlink"),
    ("post", "/linkages/{id}/qr-tokens"),
    ("post", "/certificates/verify"),
    ("post", "/family-bindings"),
    ("get", "/family-bindings"),
    ("get", "/family-bindings/{id}"),
    ("post", "/family-bindings/{id}/revoke"),
    ("post", "/settlements"),
    ("get", "/settlements"),
    ("get", "/settlements/{id}"),
    ("post", "/settlements/{id}/confirm"),
    ("post", "/settlements/{id}/cancel"),
    ("post", "/settlements/{id}/refund"),
    ("post", "/premiums"),
    ("get", "/premiums/{id}"),
    ("get", "/events"),
]
UNSIGNED = {("get", "/keys")}
SAMPLE_IDS = {"linkages": "lnk_x", "family-bindings": "fbd_x", "settlements": "stl_x", "premiums": "prm_x"}


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{id}", path)


def _implemented(method: str, path: str) -> bool:
    """Whether the portal routes this endpoint yet (some are being written in parallel)."""
    sample = "/api/v1" + path
    for collection, sample_id in SAMPLE_IDS.items():
        sample = sample.replace(f"/{collection}/{{id}}", f"/{collection}/{sample_id}")
    try:
        match = resolve(sample)
    except Resolver404:
        return False
    view_class = getattr(match.func, "view_class", None) or getattr(match.func, "cls", None)
    return view_class is not None and hasattr(view_class, method)


@pytest.fixture
def schema(db) -> dict:
    response = Client().get("/api/v1/schema")
    assert response.status_code == 200
    return json.loads(response.content)


def test_the_schema_is_served_without_authentication_as_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["version"] == "1"
    assert "PARTNER_API.md" in schema["info"]["description"]
    assert schema["components"]["securitySchemes"]["EcardEd25519"]["name"] == "Authorization"
    assert set(schema["components"]["schemas"]["Problem"]["required"]) == {"type", "title", "status", "detail", "code"}


@pytest.mark.parametrize(("method", "path"), CONTRACT_ENDPOINTS, ids=[f"{m} {p}" for m, p in CONTRACT_ENDPOINTS])
def test_every_endpoint_of_the_contract_is_in_the_schema(schema, method, path):
    assert _implemented(method, path), f"{method.upper()} {path} is not routed"
    paths = {_normalise(p): item for p, item in schema["paths"].items()}
    item = paths.get("/api/v1" + path)
    assert item is not None, f"{path} missing from the schema"
    operation = item.get(method)
    assert operation is not None, f"{method.upper()} {path} missing from the schema"
    errors = {
        status: r for status, r in operation["responses"].items() if status.startswith("4") or status == "default"
    }
    assert errors and all("application/problem+json" in r.get("content", {}) for r in errors.values())
    signed = "EcardEd25519" in json.dumps(operation.get("security", []))
    assert signed == ((method, path) not in UNSIGNED)


def test_the_schema_lists_no_endpoint_outside_the_contract(schema):
    contract = {"/api/v1" + path for _, path in CONTRACT_ENDPOINTS}
    assert {_normalise(p) for p in schema["paths"]} <= contract


def test_the_events_endpoint_is_described_as_the_contract_says(schema):
    operation = schema["paths"]["/api/v1/events"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"cursor", "limit"}
    page = schema["components"]["schemas"]["EventPage"]
    assert set(page["properties"]) == {"results", "next_cursor"}
    assert not page["properties"]["next_cursor"].get("nullable")


def test_the_schema_response_is_signed_once_the_portal_has_a_key(db):
    keys._forget_cached_key()
    key = keys.portal_key_create(actor=Actor.system("tests"))
    response = Client().get("/api/v1/schema")
    assert verify_response({key.key_id: key.public_key}, 200, "", response.headers, response.content)
    keys._forget_cached_key()


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.urls.append(value)


def test_the_docs_page_loads_every_asset_from_the_portal(db):
    client = Client()
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert not re.search(r"(https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", html), "the docs page names another host"
    parser = _Assets()
    parser.feed(html)
    assert parser.urls
    for url in parser.urls:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        body = b"".join(asset.streaming_content) if asset.streaming else asset.content
        assert body
    assert "/api/v1/schema" in html
