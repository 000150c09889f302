"""Encrypting the token columns of a row, each bound to its table, row id and column."""

from __future__ import annotations

import uuid

from allegro_link.crypto.keys import KeyRing, associated_data


class TokenVault:
    """Encrypts and decrypts one named column of one row (see `associated_data`)."""

    def __init__(self, key_ring: KeyRing) -> None:
        self.key_ring = key_ring

    def seal(self, table: str, row_id: uuid.UUID, column: str, plaintext: str) -> bytes:
        return self.key_ring.encrypt(plaintext, associated_data(table, row_id, column))

    def open(self, table: str, row_id: uuid.UUID, column: str, blob: bytes) -> str:
        return self.key_ring.decrypt(blob, associated_data(table, row_id, column))

    def reseal(self, table: str, row_id: uuid.UUID, column: str, blob: bytes) -> bytes | None:
        """The blob under the primary key, or None when it already is."""
        if not self.key_ring.needs_rotation(blob):
            return None
        return self.seal(table, row_id, column, self.open(table, row_id, column, blob))
