"""`allegro-link encryption-key rotate`: re-encrypt every stored token under the primary key.

Runs while the service is serving. Each batch is one short transaction that locks its rows with
`FOR UPDATE SKIP LOCKED`: a row that a refresh is writing right now is skipped instead of waited for,
and a row we hold cannot change under us, so what we re-seal is exactly what is stored, never a stale
token. Skipped rows are not lost: passes repeat until nothing under an old key is left (or
`max_wait_seconds` runs out, and the report says how many are still waiting).

Rotation changes only ciphertexts: `token_version` and `updated_at` stay as they are, because the
token pair itself is unchanged (the refresh path compares `token_version`, not ciphertexts).

Deploy the new key first everywhere (new key first in ALLEGRO_LINK_ENCRYPTION_KEYS, old keys after
it), then rotate; a replica still running with the old primary keeps writing old-key blobs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy import (
    ColumnElement,
    TableClause,
    and_,
    any_,
    column,
    func,
    literal,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import LargeBinary

from allegro_link.accounts.models import Account
from allegro_link.crypto.keys import DecryptionError, KeyRing
from allegro_link.crypto.vault import SealedColumn, TokenVault, column_binding
from allegro_link.oauth.models import LinkSession
from allegro_link.webhooks.models import WebhookEndpoint

log = structlog.get_logger(__name__)

# Every encrypted column. Their table and column names are also what the blobs are bound to.
SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    Account.access_token_ciphertext,
    Account.refresh_token_ciphertext,
    LinkSession.code_verifier_ciphertext,
    LinkSession.access_token_ciphertext,
    LinkSession.refresh_token_ciphertext,
    WebhookEndpoint.secret_ciphertext,
    WebhookEndpoint.previous_secret_ciphertext,
)


def _by_table(columns: Sequence[SealedColumn]) -> dict[str, tuple[str, ...]]:
    tables: dict[str, tuple[str, ...]] = {}
    for sealed in columns:
        table_name, column_name = column_binding(sealed)
        tables[table_name] = (*tables.get(table_name, ()), column_name)
    return tables


# The same, as names by table.
ENCRYPTED_COLUMNS: dict[str, tuple[str, ...]] = _by_table(SEALED_COLUMNS)


@dataclass(frozen=True, slots=True)
class UnreadableBlob:
    """A stored blob that none of the configured keys opens. Left untouched, never deleted."""

    table: str
    column: str
    row_id: uuid.UUID
    reason: str


@dataclass
class RotationReport:
    """What a rotation did. `rotated` is keyed by `table.column` and lists every encrypted column."""

    primary_key_id: str
    rotated: dict[str, int] = field(
        default_factory=lambda: {f"{t}.{c}": 0 for t, cols in ENCRYPTED_COLUMNS.items() for c in cols}
    )
    unreadable: list[UnreadableBlob] = field(default_factory=list)
    # Blobs still under an old key when `max_wait_seconds` ran out, because their rows stayed locked
    # (or a writer with an old primary key kept replacing them). Running again finishes them.
    still_pending: int = 0

    @property
    def total_rotated(self) -> int:
        return sum(self.rotated.values())

    @property
    def complete(self) -> bool:
        """True when every stored blob is now under the primary key."""
        return not self.unreadable and self.still_pending == 0


async def rotate_encryption(
    engine: AsyncEngine,
    key_ring: KeyRing,
    *,
    batch_size: int = 500,
    retry_delay_seconds: float = 0.5,
    max_wait_seconds: float = 60.0,
) -> RotationReport:
    """Re-seal every token blob that is not under `key_ring`'s primary key; idempotent.

    Undecryptable blobs are reported in `RotationReport.unreadable` and left as they are.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    rotation = _Rotation(engine, key_ring, batch_size)
    deadline = time.monotonic() + max_wait_seconds
    passes = 0
    while True:
        passes += 1
        for table_name, columns in ENCRYPTED_COLUMNS.items():
            await rotation.rotate_table(table_name, columns)
        pending = await rotation.count_pending()
        if pending == 0 or time.monotonic() >= deadline:
            break
        log.info("crypto.rotate.retrying", pending=pending, passes=passes)
        await asyncio.sleep(retry_delay_seconds)
    report = rotation.report
    report.unreadable = sorted(rotation.unreadable.values(), key=lambda b: (b.table, b.column, b.row_id))
    report.still_pending = pending
    log.info(
        "crypto.rotate.finished",
        primary_key_id=report.primary_key_id,
        rotated=report.total_rotated,
        unreadable=len(report.unreadable),
        still_pending=pending,
        passes=passes,
    )
    return report


def _primary_header(key_ring: KeyRing) -> bytes:
    """The bytes every blob sealed by the primary key starts with (format version and key id)."""
    probe = key_ring.encrypt("", b"allegro-link/rotate-probe")
    key_id = key_ring.primary_key_id.encode()
    header = probe[: 2 + len(key_id)]
    if not header.endswith(key_id) or key_ring.key_id_of(probe) != key_ring.primary_key_id:
        raise RuntimeError("unexpected ciphertext layout")  # keys.py changed its blob format
    return header


def _table(name: str, columns: Sequence[str]) -> TableClause:
    # A bare table clause, not the ORM model: no `onupdate` defaults fire, only the blob changes.
    return table(name, column("id", UUID(as_uuid=True)), *(column(c, LargeBinary()) for c in columns))


class _Rotation:
    def __init__(self, engine: AsyncEngine, key_ring: KeyRing, batch_size: int) -> None:
        self.engine = engine
        self.vault = TokenVault(key_ring)
        self.batch_size = batch_size
        self.header = _primary_header(key_ring)
        self.report = RotationReport(primary_key_id=key_ring.primary_key_id)
        self.unreadable: dict[tuple[str, str, uuid.UUID], UnreadableBlob] = {}

    def needs_rotation(self, tbl: TableClause, column_name: str) -> ColumnElement[bool]:
        """SQL for "this blob is not under the primary key" (malformed ones included)."""
        col = tbl.c[column_name]
        return and_(col.is_not(None), func.substring(col, 1, len(self.header)) != self.header)

    async def rotate_table(self, table_name: str, columns: Sequence[str]) -> None:
        """One pass over the table in id order, one short transaction per batch."""
        tbl = _table(table_name, columns)
        candidate = or_(*(self.needs_rotation(tbl, c) for c in columns))
        after: uuid.UUID | None = None
        while True:
            async with self.engine.begin() as connection:
                query = select(tbl).where(candidate).order_by(tbl.c.id).limit(self.batch_size)
                if after is not None:
                    query = query.where(tbl.c.id > after)
                rows = (await connection.execute(query.with_for_update(skip_locked=True))).all()
                for row in rows:
                    await self.rotate_row(connection, tbl, table_name, columns, row._mapping)
            if len(rows) < self.batch_size:
                return
            after = rows[-1].id

    async def rotate_row(
        self,
        connection: AsyncConnection,
        tbl: TableClause,
        table_name: str,
        columns: Sequence[str],
        values: RowMapping,
    ) -> None:
        row_id: uuid.UUID = values["id"]
        changes: dict[str, bytes] = {}
        for column_name in columns:
            blob: bytes | None = values[column_name]
            if blob is None:
                continue
            try:
                resealed = self.vault.reseal(tbl.c[column_name], row_id, blob)
            except DecryptionError as exc:
                self._unreadable(table_name, column_name, row_id, str(exc))
                continue
            if resealed is not None:
                changes[column_name] = resealed
        if not changes:
            return
        # The row is locked by this transaction, so its blobs cannot have changed since we read them;
        # the compare-and-set is a second guard that keeps a stale re-seal from ever landing.
        unchanged = and_(*(tbl.c[name] == values[name] for name in changes))
        result = await connection.execute(update(tbl).where(tbl.c.id == row_id, unchanged).values(**changes))
        if getattr(result, "rowcount", 0) == 1:
            for name in changes:
                self.report.rotated[f"{table_name}.{name}"] += 1

    def _unreadable(self, table_name: str, column_name: str, row_id: uuid.UUID, reason: str) -> None:
        key = (table_name, column_name, row_id)
        if key not in self.unreadable:
            self.unreadable[key] = UnreadableBlob(table_name, column_name, row_id, reason)
            log.warning("crypto.rotate.unreadable", table=table_name, column=column_name, row_id=str(row_id))

    async def count_pending(self) -> int:
        """Blobs still under an old key, not counting the ones known to be unreadable."""
        pending = 0
        async with self.engine.connect() as connection:
            for table_name, columns in ENCRYPTED_COLUMNS.items():
                tbl = _table(table_name, columns)
                for column_name in columns:
                    bad_ids = [i for (t, c, i) in self.unreadable if (t, c) == (table_name, column_name)]
                    # One array parameter, however many ids (a wrong key ring makes them all unreadable).
                    known_bad = tbl.c.id == any_(literal(bad_ids, ARRAY(UUID(as_uuid=True))))
                    query = (
                        select(func.count())
                        .select_from(tbl)
                        .where(self.needs_rotation(tbl, column_name), ~known_bad)
                    )
                    pending += (await connection.execute(query)).scalar_one()
        return pending
