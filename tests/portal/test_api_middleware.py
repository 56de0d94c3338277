"""The partner API's short way through the middleware (portal.middleware.PartnerApiMiddleware).

Every partner request skips the screens' middleware; the answers must stay what the full stack
gives: same status, same body byte for byte (a problem's translated detail included), same
headers apart from the per-response signature values and request id, and none of the screens' middleware may
run for it (no session is ever touched). Screens still go through everything.
"""

import pytest
from django.test import override_settings

from portal.middleware import PartnerApiMiddleware
from testkit.api import idem_key, link, make_partner_client
from testkit.settlements import insured

pytestmark = pytest.mark.django_db

# Made afresh for every response: the signature's values and the request id.
_PER_RESPONSE = {"Ecard-Key-Id", "Ecard-Timestamp", "Ecard-Nonce", "Ecard-Signature", "X-Request-Id"}


def _without_shortcut(settings_middleware: list[str]) -> list[str]:
    return [name for name in settings_middleware if name != "portal.middleware.PartnerApiMiddleware"]


def _exchange(wallet, linkage_id: str) -> list[tuple[int, dict, bytes]]:
    """A few API calls: success, validation error, domain error (translated), unknown path, bad signature."""
    answers = []
    for response in (
        wallet.post(f"/api/v1/linkages/{linkage_id}/qr-tokens", {}),
        wallet.post("/api/v1/settlements", {"token": "v1.a.b"}, idempotency_key=idem_key()),
        wallet.post(
            "/api/v1/settlements",
            {
                "token": "v1.a.b",
                "facility_code": "H310000001",
                "lines": [{"service_code": "110200001", "quantity": 1, "unit_price_fen": 1000}],
            },
            idempotency_key=idem_key(),
        ),
        wallet.get("/api/v1/no-such-endpoint"),
        wallet.get("/api/v1/settlements?state=nonsense"),
    ):
        headers = {name: value for name, value in response.headers.items() if name not in _PER_RESPONSE}
        body = response.body
        if response.status == 201:  # a fresh token each time: compare its shape only
            body = b"<token>"
        answers.append((response.status, headers, body))
    return answers


@pytest.mark.parametrize("language", [None, "en"])
def test_partner_answers_are_the_same_with_and_without_the_short_way(world, regions, settings, language):
    wallet = make_partner_client()
    if language:
        wallet.django_client.cookies["django_language"] = language
    citizen, _ = insured(regions, balance=100_000)
    linkage = link(wallet, citizen)
    assert "portal.middleware.PartnerApiMiddleware" in settings.MIDDLEWARE

    short = _exchange(wallet, linkage["id"])
    with override_settings(MIDDLEWARE=_without_shortcut(settings.MIDDLEWARE)):
        full = _exchange(wallet, linkage["id"])

    assert [status for status, _, _ in short] == [201, 400, 422, 404, 400]
    assert short == full
    assert all("Content-Length" in headers and "X-Frame-Options" in headers for _, headers, _ in short)
    assert {headers["Content-Language"] for _, headers, _ in short} == {language or "zh-hans"}


def test_the_screens_middleware_does_not_run_for_the_api(world, regions, monkeypatch):
    from django.contrib.sessions.middleware import SessionMiddleware

    seen: list[str] = []
    original = SessionMiddleware.process_request

    def spy(self, request):
        seen.append(request.path)
        return original(self, request)

    monkeypatch.setattr(SessionMiddleware, "process_request", spy)
    wallet = make_partner_client()
    citizen, _ = insured(regions, balance=100_000)
    link(wallet, citizen)
    assert not [path for path in seen if path.startswith("/api/v1/")]
    wallet.django_client.get("/accounts/login/")
    assert "/accounts/login/" in seen  # the screens still have their sessions


def test_only_the_api_prefix_takes_the_short_way(rf):
    calls: list[str] = []
    middleware = PartnerApiMiddleware(lambda request: calls.append(request.path) or "full stack")
    assert middleware(rf.get("/api/v2/x")) == "full stack"
    assert middleware(rf.get("/apiv1/")) == "full stack"
    assert middleware(rf.get("/dashboard/")) == "full stack"
    assert calls == ["/api/v2/x", "/apiv1/", "/dashboard/"]
