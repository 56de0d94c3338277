"""A complete partner integration with the e-card portal, using only `cryptography` and `httpx`.

It follows PARTNER_API.md: signing requests, verifying the portal's signed
responses and webhooks, polling `GET /events`, and checking a QR token offline
with the keys of `GET /keys`. Run it against a portal:

    ECARD_BASE_URL=http://127.0.0.1:8000 ECARD_KEY_ID=wechat-demo-... \\
    ECARD_PRIVATE_KEY_PEM=var/partner-keys/wechat.pem python docs/examples/partner_example.py

The portal's test suite (tests/docs/test_partner_example.py) runs these
functions against a live portal, so this file stays true.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Mapping

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SCHEME = "ECARD-ED25519"
QR_LEEWAY_SECONDS = 5
KEYS_REFRESH_SECONDS = 60


# --- Keys -------------------------------------------------------------------------


def new_partner_key() -> tuple[Ed25519PrivateKey, str]:
    """A fresh key pair; register the returned public PEM with the portal's operators."""
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, pem.decode()


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def fetch_portal_keys(base_url: str, *, http: httpx.Client | None = None) -> dict[str, Ed25519PublicKey]:
    """`GET /api/v1/keys` (no authentication): key id -> public key, every state included
    (`next` and `retired` keys may still sign what is in flight)."""
    client = http or httpx.Client()
    response = client.get(base_url.rstrip("/") + "/api/v1/keys", timeout=10)
    response.raise_for_status()
    return {
        item["key_id"]: Ed25519PublicKey.from_public_bytes(base64.b64decode(item["public_key"]))
        for item in response.json()["keys"]
        if item["algorithm"] == "Ed25519"
    }


# --- Signing a request -----------------------------------------------------------------


def sign_request(
    private_key: Ed25519PrivateKey,
    key_id: str,
    method: str,
    target: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> tuple[str, str]:
    """The `Authorization` header for one request and the nonce it carries.

    `target` is the path and query exactly as sent (`/api/v1/events?limit=10`);
    `body` the bytes exactly as sent (b"" for none). Sign every retry afresh.
    """
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_urlsafe(24)  # 32 characters of [A-Za-z0-9_-]
    message = f"{method.upper()}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(private_key.sign(message)).decode()
    header = f'{SCHEME} key_id="{key_id}",timestamp="{timestamp}",nonce="{nonce}",signature="{signature}"'
    return header, nonce


# --- Verifying the portal's signatures -------------------------------------------------


def _verify(portal_keys: Mapping[str, Ed25519PublicKey], headers: Mapping[str, str], message: bytes) -> bool:
    key = portal_keys.get(headers.get("Ecard-Key-Id", ""))
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(headers["Ecard-Signature"], validate=True), message)
    except (InvalidSignature, KeyError, ValueError):
        return False
    return True


def verify_response(
    portal_keys: Mapping[str, Ed25519PublicKey],
    status: int,
    request_nonce: str,
    headers: Mapping[str, str],
    body: bytes,
) -> bool:
    """`<status>\\n<request nonce>\\n<timestamp>\\n<nonce>\\n<body>\\n`, signed by a portal key."""
    try:
        message = (
            f"{status}\n{request_nonce}\n{headers['Ecard-Timestamp']}\n{headers['Ecard-Nonce']}\n".encode()
            + body
            + b"\n"
        )
    except KeyError:
        return False
    return _verify(portal_keys, headers, message)


def verify_webhook(
    portal_keys: Mapping[str, Ed25519PublicKey], headers: Mapping[str, str], body: bytes, *, max_age_seconds: int = 300
) -> dict:
    """Check a webhook POST and return its event; ValueError if it is not authentic.

    `webhook\\n<event id>\\n<timestamp>\\n<nonce>\\n<body>\\n`. Deduplicate on `id`
    afterwards, and ignore an object whose `version` is lower than one already seen.
    """
    try:
        event_id = headers["Ecard-Event-Id"]
        timestamp = headers["Ecard-Timestamp"]
        message = f"webhook\n{event_id}\n{timestamp}\n{headers['Ecard-Nonce']}\n".encode() + body + b"\n"
    except KeyError as exc:
        raise ValueError(f"missing header {exc}") from None
    if not _verify(portal_keys, headers, message):
        raise ValueError("bad signature (or unknown key id: fetch /keys again)")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > max_age_seconds:
        raise ValueError("stale webhook timestamp")
    event = json.loads(body)
    if event.get("id") != event_id:
        raise ValueError("event id header and body differ")
    return event


# --- Checking a QR token offline -------------------------------------------------------


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_qr_token_offline(
    token: str,
    portal_keys: Mapping[str, Ed25519PublicKey],
    *,
    now: float | None = None,
    leeway: int = QR_LEEWAY_SECONDS,
) -> dict:
    """The payload of an authentic, unexpired token; ValueError otherwise.

    Only the portal knows whether the card changed or the token was used since it
    was minted: call `POST /certificates/verify` whenever the portal is reachable.
    """
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "v1":
        raise ValueError("not a v1 token")
    try:
        payload = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise ValueError("malformed token") from None
    if not isinstance(payload, dict):
        raise ValueError("malformed token")
    key = portal_keys.get(str(payload.get("kid")))
    if key is None:
        raise ValueError("unknown portal key: fetch /keys again")
    try:
        key.verify(signature, f"v1.{parts[1]}".encode("ascii"))
    except InvalidSignature:
        raise ValueError("bad token signature") from None
    now = time.time() if now is None else now
    iat, exp = payload.get("iat"), payload.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        raise ValueError("malformed token")
    if now > exp + leeway:
        raise ValueError("token expired")
    if now < iat - leeway:
        raise ValueError("token from the future")
    return payload


# --- A small client ----------------------------------------------------------------------


class PortalError(Exception):
    def __init__(self, status: int, problem: dict):
        super().__init__(f"{status} {problem.get('code')}: {problem.get('detail')}")
        self.status = status
        self.problem = problem
        self.code = problem.get("code")


class PortalClient:
    """Signs every request and verifies every response; refetches `/keys` (at most once a
    minute) when a response names a key id it does not know."""

    def __init__(self, base_url: str, key_id: str, private_key: Ed25519PrivateKey, *, http: httpx.Client | None = None):
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id
        self.private_key = private_key
        self.http = http or httpx.Client(timeout=30)
        self.portal_keys: dict[str, Ed25519PublicKey] = {}
        self._keys_fetched_at = 0.0

    def refresh_keys(self, *, force: bool = False) -> None:
        if force or time.monotonic() - self._keys_fetched_at >= KEYS_REFRESH_SECONDS or not self.portal_keys:
            self.portal_keys = fetch_portal_keys(self.base_url, http=self.http)
            self._keys_fetched_at = time.monotonic()

    def request(
        self, method: str, target: str, payload: object | None = None, *, idempotency_key: str | None = None
    ) -> dict:
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        authorization, nonce = sign_request(self.private_key, self.key_id, method, target, body)
        headers = {"Authorization": authorization}
        if body or method.upper() == "POST":
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        response = self.http.request(method, self.base_url + target, content=body, headers=headers)
        if response.headers.get("Ecard-Key-Id") not in self.portal_keys:
            self.refresh_keys(force=not self.portal_keys or self._may_refresh())
        if not verify_response(self.portal_keys, response.status_code, nonce, response.headers, response.content):
            raise ValueError("the response is not signed by the portal")
        data = response.json() if response.content else {}
        if response.status_code >= 400:
            raise PortalError(response.status_code, data)
        return data

    def _may_refresh(self) -> bool:
        return time.monotonic() - self._keys_fetched_at >= KEYS_REFRESH_SECONDS

    def events(self, cursor: str | None = None, limit: int = 50) -> tuple[list[dict], str]:
        """One page of `GET /events`; keep the returned cursor (never null) and ask again."""
        target = f"/api/v1/events?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = self.request("GET", target)
        return page["results"], page["next_cursor"]


def main() -> None:
    base_url = os.environ.get("ECARD_BASE_URL", "http://127.0.0.1:8000")
    with open(os.environ["ECARD_PRIVATE_KEY_PEM"], "rb") as handle:
        private_key = load_private_key(handle.read())
    client = PortalClient(base_url, os.environ["ECARD_KEY_ID"], private_key)
    client.refresh_keys(force=True)
    events, cursor = client.events(limit=10)
    for event in events:
        print(event["id"], event["type"], event["data"]["object"].get("id"))
    print("next cursor:", cursor)


if __name__ == "__main__":
    main()
