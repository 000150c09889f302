"""Recording every token handed out, without a database write on the request path.

Records are buffered and written in batches (one multi-row INSERT per flush, by default every
second). A graceful shutdown flushes what is buffered; a crash can lose at most the last interval's
records. While the database is unreachable the buffer keeps up to `max_buffer` records and then drops
the oldest, counting them in the metric `allegro_link_token_audit_dropped_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.db import Base, utcnow
from allegro_link.ops.metrics import Metrics
from allegro_link.tokens.models import TokenIssue

log = structlog.get_logger(__name__)
# The table, not the entity: a plain multi-row INSERT, without the ORM's bulk-insert bookkeeping.
_TOKEN_ISSUES = Base.metadata.tables[TokenIssue.__tablename__]


@dataclass(frozen=True, slots=True)
class IssueRecord:
    account_id: uuid.UUID
    api_key_id: uuid.UUID
    api_key_name: str
    token_version: int
    refreshed: bool
    issued_at: datetime


class TokenAuditLog:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 1000,
        max_buffer: int = 100_000,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._metrics = metrics
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._buffer: deque[IssueRecord] = deque(maxlen=max_buffer)
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    def record(
        self,
        *,
        account_id: uuid.UUID,
        api_key_id: uuid.UUID,
        api_key_name: str,
        token_version: int,
        refreshed: bool,
    ) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self._metrics.token_audit_dropped.inc()
        self._buffer.append(
            IssueRecord(account_id, api_key_id, api_key_name, token_version, refreshed, utcnow())
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="token-audit-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            while self._buffer:
                await self.flush()

    async def flush(self) -> int:
        """Write the records buffered when the flush starts; later ones wait for the next flush.

        Draining until the buffer is empty would, under steady traffic, turn the writer into a stream
        of tiny INSERTs (each one's round trips let more records arrive) instead of a batch a second.
        """
        written = 0
        async with self._flush_lock:
            pending = len(self._buffer)
            while pending > 0 and self._buffer:
                batch = [
                    self._buffer.popleft() for _ in range(min(self._batch_size, pending, len(self._buffer)))
                ]
                pending -= len(batch)
                try:
                    async with self._sessionmaker.begin() as session:
                        await session.execute(
                            insert(_TOKEN_ISSUES),
                            [
                                {
                                    "account_id": r.account_id,
                                    "api_key_id": r.api_key_id,
                                    "api_key_name": r.api_key_name,
                                    "token_version": r.token_version,
                                    "refreshed": r.refreshed,
                                    "issued_at": r.issued_at,
                                }
                                for r in batch
                            ],
                        )
                except Exception:
                    # Put the batch back (oldest first) and try again on the next tick.
                    self._buffer.extendleft(reversed(batch))
                    raise
                written += len(batch)
        return written

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("token.audit.flush_failed", error=type(exc).__name__, buffered=len(self._buffer))
