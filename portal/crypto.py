"""Personal data at rest: AES-256-GCM encryption and keyed-hash blind indexes.

Ciphertext is `version (1 byte) | nonce (12) | ciphertext+tag`; the purpose
(for example "citizen.id_number") is bound as associated data. A blind index
is `"<version>:" + HMAC-SHA256(key, purpose | value)`; lookups compute it
under every known key version, so a key can be rotated row by row.

`FieldCipher` is the same for one purpose with its keys set up once, for code
that handles many values (a bulk import); the functions set them up per call.
"""

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings


def _current(keys: dict[int, bytes]) -> tuple[int, bytes]:
    version = max(keys)
    return version, keys[version]


def _seal(aead: AESGCM, version: bytes, value: bytes, associated_data: bytes) -> bytes:
    """The stored form: `version | nonce | ciphertext+tag`."""
    nonce = os.urandom(12)
    return version + nonce + aead.encrypt(nonce, value, associated_data)


def _keyed_index(key: bytes, purpose: str) -> hmac.HMAC:
    """The HMAC of the blind index with `purpose |` already fed in, to be copied per value."""
    return hmac.new(key, f"{purpose}|".encode(), hashlib.sha256)


def _index(prefix: str, keyed: hmac.HMAC, value: str) -> str:
    """`prefix` is the key version and a colon: `"<version>:"`."""
    mac = keyed.copy()
    mac.update(value.encode())
    return prefix + mac.hexdigest()


def encrypt_bytes(value: bytes, *, keys: dict[int, bytes], associated_data: bytes) -> bytes:
    """AES-256-GCM under the highest key version: `version | nonce | ciphertext+tag`."""
    version, key = _current(keys)
    return _seal(AESGCM(key), bytes([version]), value, associated_data)


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
    return _index(f"{version}:", _keyed_index(keys[version], purpose), value)


def blind_index_candidates(value: str, *, purpose: str) -> list[str]:
    """The value's index under every key version, newest first, for `__in` lookups."""
    return [
        blind_index(value, purpose=purpose, version=v) for v in sorted(settings.ECARD_BLIND_INDEX_KEYS, reverse=True)
    ]


class FieldCipher:
    """`encrypt_text`, `blind_index` and `blind_index_candidates` for one purpose, with
    the cipher and the keyed HMACs built once from the current keys and reused for
    every value. Create one per batch: it does not see keys rotated after it."""

    def __init__(self, purpose: str) -> None:
        version, key = _current(settings.ECARD_FIELD_ENCRYPTION_KEYS)
        self._version = bytes([version])
        self._aead = AESGCM(key)
        self._associated_data = purpose.encode()
        index_keys = settings.ECARD_BLIND_INDEX_KEYS
        # Newest first, as blind_index_candidates.
        self._indexes = [(f"{v}:", _keyed_index(index_keys[v], purpose)) for v in sorted(index_keys, reverse=True)]

    def encrypt(self, value: str) -> bytes:
        return _seal(self._aead, self._version, value.encode(), self._associated_data)

    def blind_index(self, value: str) -> str:
        """The index under the newest key: the one stored."""
        return _index(*self._indexes[0], value)

    def blind_index_candidates(self, value: str) -> list[str]:
        return [_index(prefix, keyed, value) for prefix, keyed in self._indexes]
