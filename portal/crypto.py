"""Personal data at rest: AES-256-GCM encryption and keyed-hash blind indexes.

Ciphertext is `version (1 byte) | nonce (12) | ciphertext+tag`; the purpose
(for example "citizen.id_number") is bound as associated data. A blind index
is `"<version>:" + HMAC-SHA256(key, purpose | value)`; lookups compute it
under every known key version, so a key can be rotated row by row.

`FieldCipher` is the same for one purpose with its keys set up once, for code
that handles many values (a bulk import); the functions set them up per call.

Files (`encrypt_chunks`, `DecryptingReader`) are encrypted in chunks, so that
neither side holds a whole file: `header | chunk 0 | chunk 1 | ...`, each chunk
AES-256-GCM under a key of the file's own (HKDF of the current field key and a
random salt, for the purpose), its index and whether it is the last bound as
associated data: a chunk altered, dropped, moved or cut off fails to decrypt.
"""

import hashlib
import hmac
import io
import os
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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


# --- Files -------------------------------------------------------------------

FILE_CHUNK_BYTES = 64 * 1024  # of plain text per chunk; each stored chunk has a 16-byte tag more
_FILE_MAGIC = b"ECF1"
_FILE_HEADER = struct.Struct(">4sB16s")  # magic, field key version, salt
_TAG_BYTES = 16


class FileTampered(Exception):
    """An encrypted file does not decrypt: altered, truncated, reordered or not ours."""


def _file_aead(key: bytes, salt: bytes, purpose: str) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=f"file|{purpose}".encode())
    return AESGCM(hkdf.derive(key))


def _chunk_nonce(index: int) -> bytes:
    # The key is the file's own, so the chunk index alone makes each nonce unique.
    return index.to_bytes(12, "big")


def _chunk_ad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, final)


def encrypt_chunks(chunks: Iterable[bytes], *, purpose: str) -> Iterator[bytes]:
    """The encrypted file of the concatenated `chunks`, as it is produced: the header,
    then one sealed chunk per FILE_CHUNK_BYTES of input (one held back so that the
    last can be marked as such)."""
    version, key = _current(settings.ECARD_FIELD_ENCRYPTION_KEYS)
    header = _FILE_HEADER.pack(_FILE_MAGIC, version, os.urandom(16))
    aead = _file_aead(key, header[5:], purpose)
    yield header
    buffer = bytearray()
    index = 0
    for data in chunks:
        buffer += data
        while len(buffer) > FILE_CHUNK_BYTES:  # more follows: this chunk is not the last
            piece = bytes(buffer[:FILE_CHUNK_BYTES])
            del buffer[:FILE_CHUNK_BYTES]
            yield aead.encrypt(_chunk_nonce(index), piece, _chunk_ad(header, index, False))
            index += 1
    yield aead.encrypt(_chunk_nonce(index), bytes(buffer), _chunk_ad(header, index, True))


class DecryptingReader(io.RawIOBase):
    """The plain bytes of a file written by `encrypt_chunks`, decrypted chunk by chunk
    as they are read; raises FileTampered at the first chunk that does not decrypt."""

    def __init__(self, raw: BinaryIO, *, purpose: str) -> None:
        super().__init__()
        self._raw = raw
        header = raw.read(_FILE_HEADER.size)
        if len(header) != _FILE_HEADER.size:
            raise FileTampered("no header")
        magic, version, salt = _FILE_HEADER.unpack(header)
        key = settings.ECARD_FIELD_ENCRYPTION_KEYS.get(version)
        if magic != _FILE_MAGIC or key is None:
            raise FileTampered("not an encrypted file of this portal")
        self._header = header
        self._aead = _file_aead(key, salt, purpose)
        self._index = 0
        self._next = raw.read(FILE_CHUNK_BYTES + _TAG_BYTES)
        self._plain = b""
        self._pos = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        sealed = self._next
        if len(sealed) < _TAG_BYTES:
            raise FileTampered("truncated")
        self._next = self._raw.read(FILE_CHUNK_BYTES + _TAG_BYTES)
        final = not self._next
        try:
            self._plain = self._aead.decrypt(
                _chunk_nonce(self._index), sealed, _chunk_ad(self._header, self._index, final)
            )
        except InvalidTag:
            raise FileTampered(f"chunk {self._index} does not decrypt") from None
        self._pos = 0
        self._index += 1
        self._done = final

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while self._pos >= len(self._plain):
            if self._done:
                return 0
            self._fill()
        n = min(len(buffer), len(self._plain) - self._pos)
        buffer[:n] = self._plain[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()
