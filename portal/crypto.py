"""Personal data at rest: AES-256-GCM encryption and keyed-hash blind indexes.

Ciphertext is `version (1 byte) | nonce (12) | ciphertext+tag`; the purpose
(for example "citizen.id_number") is bound as associated data. A blind index
is `"<version>:" + HMAC-SHA256(key, purpose | value)`; lookups compute it
under every known key version, so a key can be rotated row by row.
"""

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings


def _current(keys: dict[int, bytes]) -> tuple[int, bytes]:
    version = max(keys)
    return version, keys[version]


def encrypt_bytes(value: bytes, *, keys: dict[int, bytes], associated_data: bytes) -> bytes:
    """AES-256-GCM under the highest key version: `version | nonce | ciphertext+tag`."""
    version, key = _current(keys)
    nonce = os.urandom(12)
    return bytes([version]) + nonce + AESGCM(key).encrypt(nonce, value, associated_data)


def decrypt_bytes(blob: bytes | memoryview, *, keys: dict[int, bytes], associated_data: bytes) -> bytes:
    data = bytes(blob)
    return AESGCM(keys[data[0]]).decrypt(data[1:13], data[13:], associated_data)


def encrypt_text(value: str, *, purpose: str) -> bytes:
    return encrypt_bytes(value.encode(), keys=settings.ECARD_FIELD_ENCRYPTION_KEYS, associated_data=purpose.encode())


def decrypt_text(blob: bytes | memoryview, *, purpose: str) -> str:
    return decrypt_bytes(blob, keys=settings.ECARD_FIELD_ENCRYPTION_KEYS, associated_data=purpose.encode()).decode()


def blind_index(value: str, *, purpose: str, version: int | None = None) -> str:
    keys = settings.ECARD_BLIND_INDEX_KEYS
    version = max(keys) if version is None else version
    digest = hmac.new(keys[version], f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()
    return f"{version}:{digest}"


def blind_index_candidates(value: str, *, purpose: str) -> list[str]:
    """The value's index under every key version, newest first, for `__in` lookups."""
    return [
        blind_index(value, purpose=purpose, version=v) for v in sorted(settings.ECARD_BLIND_INDEX_KEYS, reverse=True)
    ]
