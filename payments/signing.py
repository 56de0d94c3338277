"""Ed25519 signatures of the partner contract (PARTNER_API.md "Authentication").

Pure functions: raw keys and signatures travel as standard base64 (with
padding); every string to sign is five lines, each ending in `\\n`, the last
being the body bytes exactly as sent.
"""

import base64
import binascii
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

ALGORITHM = "Ed25519"
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

HEADER_KEY_ID = "Ecard-Key-Id"
HEADER_TIMESTAMP = "Ecard-Timestamp"
HEADER_NONCE = "Ecard-Nonce"
HEADER_SIGNATURE = "Ecard-Signature"


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict standard base64; raises ValueError on anything else."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not standard base64") from exc


# --- Keys -------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_to_raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def private_key_from_raw(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    raw = b64decode(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def new_nonce() -> str:
    """32 characters of [A-Za-z0-9_-]."""
    return secrets.token_urlsafe(24)


# --- Strings to sign -------------------------------------------------------


def _five_lines(first: str, second: str, timestamp: int | str, nonce: str, body: bytes) -> bytes:
    head = f"{first}\n{second}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def request_string_to_sign(method: str, target: str, timestamp: int | str, nonce: str, body: bytes) -> bytes:
    """`<METHOD>\\n<path?query>\\n<timestamp>\\n<nonce>\\n<body>\\n`."""
    return _five_lines(method.upper(), target, timestamp, nonce, body)


def response_string_to_sign(status: int, request_nonce: str, timestamp: int | str, nonce: str, body: bytes) -> bytes:
    """`<status>\\n<request nonce or empty>\\n<timestamp>\\n<nonce>\\n<body>\\n`."""
    return _five_lines(str(status), request_nonce, timestamp, nonce, body)


def webhook_string_to_sign(event_id: str, timestamp: int | str, nonce: str, body: bytes) -> bytes:
    """`webhook\\n<event id>\\n<timestamp>\\n<nonce>\\n<body>\\n`."""
    return _five_lines("webhook", event_id, timestamp, nonce, body)


# --- Sign and verify ------------------------------------------------------


def sign(private_key: Ed25519PrivateKey, message: bytes) -> str:
    return b64encode(private_key.sign(message))


def verify(public_key: Ed25519PublicKey | str, message: bytes, signature_b64: str) -> bool:
    """True only for a well-formed signature that verifies; never raises on bad input."""
    try:
        key = public_key_from_b64(public_key) if isinstance(public_key, str) else public_key
        signature = b64decode(signature_b64)
        if len(signature) != 64:
            return False
        key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class SignatureHeaders:
    key_id: str
    timestamp: int
    nonce: str
    signature: str

    def as_dict(self) -> dict[str, str]:
        return {
            HEADER_KEY_ID: self.key_id,
            HEADER_TIMESTAMP: str(self.timestamp),
            HEADER_NONCE: self.nonce,
            HEADER_SIGNATURE: self.signature,
        }


def webhook_headers(
    *, key_id: str, private_key: Ed25519PrivateKey, event_id: str, body: bytes, timestamp: int
) -> SignatureHeaders:
    nonce = new_nonce()
    message = webhook_string_to_sign(event_id, timestamp, nonce, body)
    return SignatureHeaders(key_id, timestamp, nonce, sign(private_key, message))


def response_headers(
    *, key_id: str, private_key: Ed25519PrivateKey, status: int, request_nonce: str, body: bytes, timestamp: int
) -> SignatureHeaders:
    nonce = new_nonce()
    message = response_string_to_sign(status, request_nonce, timestamp, nonce, body)
    return SignatureHeaders(key_id, timestamp, nonce, sign(private_key, message))
