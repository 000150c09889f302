"""Encrypting the secret columns of a row, each bound to its table, row id and column."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import KeyedColumnElement

from allegro_link.crypto.keys import KeyRing, associated_data

# A sealed column: the mapped attribute (`Account.access_token_ciphertext`), or a column of a table.
SealedColumn = QueryableAttribute[Any] | KeyedColumnElement[Any]


def column_binding(column: SealedColumn) -> tuple[str, str]:
    """The table and column names a blob of `column` is bound to (see `associated_data`)."""
    element = column.expression  # the Column itself for a column, the mapped Column for an attribute
    table = getattr(element, "table", None)
    name = getattr(element, "name", None)
    if table is None or not isinstance(getattr(table, "name", None), str) or not isinstance(name, str):
        raise TypeError(f"{column!r} is not a column of a named table")
    return table.name, name


class TokenVault:
    """Encrypts and decrypts one column of one row (see `associated_data`).

    The column is given as the mapped attribute (`vault.seal(Account.access_token_ciphertext, account.id,
    token)`): its table and column names are what the blob is bound to, so a blob copied to another row
    or column does not open.
    """

    def __init__(self, key_ring: KeyRing) -> None:
        self.key_ring = key_ring

    def seal(self, column: SealedColumn, row_id: uuid.UUID, plaintext: str) -> bytes:
        return self.key_ring.encrypt(plaintext, _associated_data(column, row_id))

    def open(self, column: SealedColumn, row_id: uuid.UUID, blob: bytes) -> str:
        return self.key_ring.decrypt(blob, _associated_data(column, row_id))

    def reseal(self, column: SealedColumn, row_id: uuid.UUID, blob: bytes) -> bytes | None:
        """The blob under the primary key, or None when it already is."""
        if not self.key_ring.needs_rotation(blob):
            return None
        return self.seal(column, row_id, self.open(column, row_id, blob))


def _associated_data(column: SealedColumn, row_id: uuid.UUID) -> bytes:
    table, name = column_binding(column)
    return associated_data(table, row_id, name)
