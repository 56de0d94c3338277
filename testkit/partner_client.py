"""A partner's client, written from PARTNER_API.md alone (it imports nothing of the portal).

It signs requests as the contract says, verifies the portal's response
signatures with the keys from `GET /api/v1/keys`, and works over real HTTP
(httpx against a live server) or through Django's test client.
"""

import base64
import json
import secrets
import time
from dataclasses import dataclass, field

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_key_pair() -> tuple[Ed25519PrivateKey, str]:
    """A private key and the standard base64 of its 32 raw public bytes."""
    private = Ed25519PrivateKey.generate()
    return private, b64(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def authorization(
    private_key: Ed25519PrivateKey,
    key_id: str,
    method: str,
    target: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> tuple[str, str]:
    """The Authorization header value and the nonce it carries."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_urlsafe(24)
    to_sign = f"{method.upper()}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = b64(private_key.sign(to_sign))
    header = f'ECARD-ED25519 key_id="{key_id}",timestamp="{timestamp}",nonce="{nonce}",signature="{signature}"'
    return header, nonce


def verify_response(public_keys: dict[str, str], status: int, request_nonce: str, headers, body: bytes) -> bool:
    key_id = headers.get("Ecard-Key-Id")
    if key_id not in public_keys:
        return False
    to_sign = (
        f"{status}\n{request_nonce}\n{headers['Ecard-Timestamp']}\n{headers['Ecard-Nonce']}\n".encode() + body + b"\n"
    )
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_keys[key_id]))
    try:
        key.verify(base64.b64decode(headers["Ecard-Signature"]), to_sign)
    except Exception:
        return False
    return True


def verify_webhook(public_keys: dict[str, str], headers, body: bytes) -> bool:
    key_id = headers.get("Ecard-Key-Id")
    if key_id not in public_keys:
        return False
    to_sign = (
        f"webhook\n{headers['Ecard-Event-Id']}\n{headers['Ecard-Timestamp']}\n{headers['Ecard-Nonce']}\n".encode()
        + body
        + b"\n"
    )
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_keys[key_id]))
    try:
        key.verify(base64.b64decode(headers["Ecard-Signature"]), to_sign)
    except Exception:
        return False
    return True


@dataclass
class PartnerResponse:
    status: int
    headers: dict
    body: bytes
    signature_valid: bool

    def json(self):
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        return self.json().get("code") if self.body else None


@dataclass
class PartnerClient:
    """Signs every request; `transport` is an httpx base URL or a Django test Client."""

    key_id: str
    private_key: Ed25519PrivateKey
    base_url: str | None = None
    django_client: object | None = None
    portal_keys: dict[str, str] = field(default_factory=dict)

    def _send(self, method: str, target: str, body: bytes, headers: dict[str, str]):
        if self.django_client is not None:
            meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k != "Content-Type"}
            kwargs = {"content_type": headers["Content-Type"]} if "Content-Type" in headers else {}
            response = self.django_client.generic(method, target, data=body, **kwargs, **meta)
            return response.status_code, response.headers, response.content
        response = httpx.request(method, self.base_url.rstrip("/") + target, content=body, headers=headers, timeout=30)
        return response.status_code, response.headers, response.content

    def fetch_portal_keys(self) -> dict[str, str]:
        status, _, body = self._send("GET", "/api/v1/keys", b"", {})
        assert status == 200, body
        self.portal_keys = {k["key_id"]: k["public_key"] for k in json.loads(body)["keys"]}
        return self.portal_keys

    def request(
        self,
        method: str,
        target: str,
        payload=None,
        *,
        raw_body: bytes | None = None,
        idempotency_key: str | None = None,
        content_type: str = "application/json",
        timestamp: int | None = None,
        nonce: str | None = None,
        sign: bool = True,
        extra_headers: dict[str, str] | None = None,
    ) -> PartnerResponse:
        if raw_body is not None:
            body = raw_body
        elif payload is not None:
            body = json.dumps(payload, ensure_ascii=False).encode()
        else:
            body = b""
        headers: dict[str, str] = {}
        if body or method.upper() == "POST":
            headers["Content-Type"] = content_type
        request_nonce = ""
        if sign:
            headers["Authorization"], request_nonce = authorization(
                self.private_key, self.key_id, method, target, body, timestamp=timestamp, nonce=nonce
            )
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        headers.update(extra_headers or {})
        status, response_headers, response_body = self._send(method, target, body, headers)
        if not self.portal_keys:
            self.fetch_portal_keys()
        valid = verify_response(self.portal_keys, status, request_nonce, response_headers, response_body)
        return PartnerResponse(status, response_headers, response_body, valid)

    def get(self, target: str, **kwargs) -> PartnerResponse:
        return self.request("GET", target, **kwargs)

    def post(self, target: str, payload=None, **kwargs) -> PartnerResponse:
        return self.request("POST", target, payload, **kwargs)
