"""AES-256-GCM encryption of tokens at rest, with key ids and associated data.

Blob layout: `version(1) | len(key_id)(1) | key_id | nonce(12) | ciphertext+tag`. The associated data
names the row and column a value belongs to, so a ciphertext copied into another row or column fails
to decrypt instead of silently handing out someone else's token.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from allegro_link.settings import AES_KEY_BYTES, EncryptionKey

_VERSION = 1
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """The blob is malformed, its key is unknown, or it was not made for this row and column."""


def generate_key_entry() -> str:
    """A new `key_id:base64key` entry for ALLEGRO_LINK_ENCRYPTION_KEYS."""
    key_id = "k" + secrets.token_hex(4)
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=AES_KEY_BYTES * 8)).decode()}"


def associated_data(table: str, row_id: uuid.UUID, column: str) -> bytes:
    return f"allegro-link/{table}/{row_id}/{column}".encode()


@dataclass(frozen=True)
class KeyRing:
    """The first key encrypts; every key decrypts (so keys can be rotated without downtime)."""

    keys: Sequence[EncryptionKey]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a key ring needs at least one key")
        object.__setattr__(self, "_ciphers", {k.key_id: AESGCM(k.secret) for k in self.keys})

    @property
    def primary_key_id(self) -> str:
        return self.keys[0].key_id

    def encrypt(self, plaintext: str, aad: bytes) -> bytes:
        key_id = self.primary_key_id.encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._cipher(self.primary_key_id).encrypt(nonce, plaintext.encode(), aad)
        return bytes([_VERSION, len(key_id)]) + key_id + nonce + sealed

    def decrypt(self, blob: bytes, aad: bytes) -> str:
        key_id, nonce, sealed = _split(blob)
        try:
            cipher = self._cipher(key_id)
        except KeyError:
            raise DecryptionError(f"unknown encryption key id {key_id!r}") from None
        try:
            return cipher.decrypt(nonce, sealed, aad).decode()
        except InvalidTag:
            raise DecryptionError(
                "ciphertext does not belong to this row and column, or was altered"
            ) from None

    def key_id_of(self, blob: bytes) -> str:
        return _split(blob)[0]

    def needs_rotation(self, blob: bytes) -> bool:
        return self.key_id_of(blob) != self.primary_key_id

    def _cipher(self, key_id: str) -> AESGCM:
        ciphers: dict[str, AESGCM] = self._ciphers  # type: ignore[attr-defined]
        return ciphers[key_id]


def _split(blob: bytes) -> tuple[str, bytes, bytes]:
    if len(blob) < 2 or blob[0] != _VERSION:
        raise DecryptionError("unknown ciphertext format")
    id_length = blob[1]
    key_id = blob[2 : 2 + id_length]
    nonce = blob[2 + id_length : 2 + id_length + _NONCE_BYTES]
    sealed = blob[2 + id_length + _NONCE_BYTES :]
    if len(key_id) != id_length or len(nonce) != _NONCE_BYTES or len(sealed) < 16:
        raise DecryptionError("truncated ciphertext")
    return key_id.decode(errors="replace"), nonce, sealed
