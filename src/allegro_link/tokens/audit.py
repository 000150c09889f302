"""Recording every token handed out, without a database write on the request path.

Records are buffered and written in batches (one multi-row INSERT per flush, by default every
second). A graceful shutdown flushes what is buffered; a crash can lose at most the last interval's
records. While the database is unreachable the buffer keeps up to `max_buffer` records and then drops
the oldest, counting them in the metric `allegro_link_token_audit_dropped_total`.

A token handed out is also a use of the account (Allegro's 90-day rule, `accounts.deadline`), so the
same flush moves each account's `last_used_at`: one UPDATE for all the accounts of the interval, not a
write per token read. Rows locked at that moment (a refresh in flight holds its row while it calls
Allegro) are skipped rather than waited for, and their use is written by a later flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.db import utcnow
from allegro_link.ops.metrics import Metrics

log = structlog.get_logger(__name__)

# Each flush is two statements whatever its size, their values passed as one array per column: the
# driver encodes arrays natively, where a multi-row INSERT and an executemany UPDATE cost the event
# loop tens of milliseconds per thousand records in SQLAlchemy's per-row parameter handling, a pause
# every request in flight waited out (docs/performance.md).
_INSERT_ISSUES = text(
    "INSERT INTO token_issues (account_id, api_key_id, api_key_name, token_version, refreshed, issued_at)"
    " SELECT * FROM unnest(CAST(:account_ids AS uuid[]), CAST(:api_key_ids AS uuid[]),"
    " CAST(:api_key_names AS varchar[]), CAST(:token_versions AS integer[]), CAST(:refreshed AS boolean[]),"
    " CAST(:issued_at AS timestamptz[]))"
)
# Moves `last_used_at` forward on the rows not locked now, and names the accounts whose rows someone
# else held (not the ones deleted meanwhile), whose uses wait for the next flush. Rows are locked in
# id order and locked rows skipped, so two replicas' flushes never deadlock and a refresh in flight
# never holds a flush up.
_WRITE_USES = text("""WITH used AS (
        SELECT * FROM unnest(CAST(:account_ids AS uuid[]), CAST(:used_at AS timestamptz[])) AS u (id, used_at)
    ), locked AS (
        SELECT id FROM accounts WHERE id IN (SELECT id FROM used) ORDER BY id FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE accounts SET last_used_at = used.used_at, updated_at = :now
        FROM used JOIN locked ON locked.id = used.id
        WHERE accounts.id = used.id
          AND (accounts.last_used_at IS NULL OR accounts.last_used_at < used.used_at)
    )
    SELECT used.id FROM used
    WHERE used.id NOT IN (SELECT id FROM locked) AND EXISTS (SELECT FROM accounts WHERE accounts.id = used.id)
""")


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
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._metrics = metrics
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._buffer: deque[IssueRecord] = deque(maxlen=max_buffer)
        # The latest use of each account not yet written: at most one entry per account.
        self._uses: dict[uuid.UUID, datetime] = {}
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._clock = clock
        self._sleep = sleep

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
        now = self._clock()
        self._buffer.append(IssueRecord(account_id, api_key_id, api_key_name, token_version, refreshed, now))
        self._uses[account_id] = now

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
            if self._uses:
                await self.flush()  # uses whose rows were locked at the last flush: one more try

    async def flush(self) -> int:
        """Write the records buffered when the flush starts; later ones wait for the next flush.

        Draining until the buffer is empty would, under steady traffic, turn the writer into a stream
        of tiny INSERTs (each one's round trips let more records arrive) instead of a batch a second.
        """
        written = 0
        async with self._flush_lock:
            pending = len(self._buffer)
            uses, self._uses = self._uses, {}
            while (pending > 0 and self._buffer) or uses:
                batch = [
                    self._buffer.popleft() for _ in range(min(self._batch_size, pending, len(self._buffer)))
                ]
                pending -= len(batch)
                try:
                    async with self._sessionmaker.begin() as session:
                        if batch:
                            await session.execute(_INSERT_ISSUES, _issue_columns(batch))
                        if uses:
                            skipped = await _write_uses(session, uses, self._clock())
                except Exception:
                    # Put the batch back (oldest first) and the uses too; try again on the next tick.
                    self._buffer.extendleft(reversed(batch))
                    self._keep_uses(uses)
                    raise
                if uses:
                    self._keep_uses(skipped)
                    uses = {}
                written += len(batch)
        return written

    def _keep_uses(self, uses: dict[uuid.UUID, datetime]) -> None:
        for account_id, used_at in uses.items():
            if self._uses.get(account_id, used_at) <= used_at:
                self._uses[account_id] = used_at

    async def _run(self) -> None:
        while True:
            await self._sleep(self._flush_interval)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("token.audit.flush_failed", error=type(exc).__name__, buffered=len(self._buffer))


def _issue_columns(batch: list[IssueRecord]) -> dict[str, list[object]]:
    return {
        "account_ids": [record.account_id for record in batch],
        "api_key_ids": [record.api_key_id for record in batch],
        "api_key_names": [record.api_key_name for record in batch],
        "token_versions": [record.token_version for record in batch],
        "refreshed": [record.refreshed for record in batch],
        "issued_at": [record.issued_at for record in batch],
    }


async def _write_uses(
    session: AsyncSession, uses: dict[uuid.UUID, datetime], now: datetime
) -> dict[uuid.UUID, datetime]:
    """Move `last_used_at` forward for the rows not locked now; returns the uses left for later."""
    held = await session.scalars(
        _WRITE_USES, {"account_ids": list(uses), "used_at": list(uses.values()), "now": now}
    )
    # Kept for later: the rows someone else holds, not the accounts deleted meanwhile.
    return {account_id: uses[account_id] for account_id in held}
