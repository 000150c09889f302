"""The token audit log on a clock and a writer loop the test drives: records keep the time they were handed
out, are written in batches once per interval (never per read), and survive a failed write."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from allegro_link.accounts.models import Account
from allegro_link.ops.metrics import Metrics
from allegro_link.settings import Settings
from allegro_link.tokens.audit import TokenAuditLog
from allegro_link.tokens.models import TokenIssue
from tests.support.accounts import insert_account
from tests.support.statements import QueryCounter, counting

INTERVAL = 0.25
# A bound for failing, not a wait: the writer is back asleep as soon as its flush is done.
WRITER_BOUND = 30.0
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


class WallClock:
    """The audit's `utcnow`, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Ticks:
    """The writer's sleep: an interval passes when the test says so, not after the time it asks for."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._passed: asyncio.Queue[None] = asyncio.Queue()
        self._asleep = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self._asleep.set()
        await self._passed.get()

    async def writer_asleep(self) -> None:
        async with asyncio.timeout(WRITER_BOUND):
            await self._asleep.wait()

    async def tick(self) -> None:
        """Let one interval pass; return once the writer has flushed and sleeps again."""
        self._asleep.clear()
        self._passed.put_nowait(None)
        await self.writer_asleep()


class InjectedFailure(Exception):
    pass


def _refuse() -> None:
    raise InjectedFailure("injected: the database refused the INSERT")


@pytest.fixture
def inserts(engine: AsyncEngine) -> Iterator[QueryCounter]:
    """The INSERTs into token_issues that reach PostgreSQL."""
    with counting(engine, lambda statement: statement.startswith("INSERT INTO token_issues")) as counter:
        yield counter


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def audit(
    sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics, clock: WallClock, ticks: Ticks
) -> TokenAuditLog:
    return TokenAuditLog(sessionmaker, metrics, flush_interval=INTERVAL, clock=clock, sleep=ticks)


def _hand_out(audit: TokenAuditLog, account_id: uuid.UUID | None = None, name: str = "svc") -> None:
    audit.record(
        account_id=account_id or uuid.uuid4(),
        api_key_id=uuid.uuid4(),
        api_key_name=name,
        token_version=1,
        refreshed=False,
    )


async def _written(sessionmaker: async_sessionmaker[AsyncSession]) -> list[tuple[str, datetime]]:
    """(api_key_name, issued_at) of every record written, in the order they were written."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(TokenIssue.api_key_name, TokenIssue.issued_at).order_by(TokenIssue.id)
        )
        return [(name, issued_at) for name, issued_at in rows]


async def _last_used(
    sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID
) -> datetime | None:
    async with sessionmaker() as session:
        return await session.scalar(select(Account.last_used_at).where(Account.id == account_id))


class TestRecords:
    async def test_a_record_keeps_the_time_it_was_handed_out_not_the_flush_time(
        self, audit: TokenAuditLog, clock: WallClock, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        handed_out_at = clock.now
        _hand_out(audit)
        clock.advance(30)
        assert await audit.flush() == 1
        assert await _written(sessionmaker) == [("svc", handed_out_at)]

    async def test_an_accounts_latest_use_is_written_once_per_flush(
        self,
        audit: TokenAuditLog,
        clock: WallClock,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        account = await insert_account(settings, last_used_at=LONG_AGO)
        _hand_out(audit, account.id)
        clock.advance(5)
        latest = clock.now
        _hand_out(audit, account.id)
        clock.advance(30)
        assert await audit.flush() == 2
        assert await _last_used(sessionmaker, account.id) == latest


class TestBatches:
    async def test_a_flush_writes_one_insert_per_batch(
        self, sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics, inserts: QueryCounter
    ) -> None:
        audit = TokenAuditLog(sessionmaker, metrics, batch_size=2)
        for index in range(5):
            _hand_out(audit, name=f"svc-{index}")
        assert await audit.flush() == 5
        assert inserts.count == 3
        assert [name for name, _ in await _written(sessionmaker)] == [f"svc-{index}" for index in range(5)]

    async def test_records_that_arrive_during_a_flush_wait_for_the_next_one(
        self, sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics, inserts: QueryCounter
    ) -> None:
        audit = TokenAuditLog(sessionmaker, metrics, batch_size=1)
        _hand_out(audit, name="before-1")
        _hand_out(audit, name="before-2")
        inserts.before_next(lambda: _hand_out(audit, name="during"))
        assert await audit.flush() == 2
        assert [name for name, _ in await _written(sessionmaker)] == ["before-1", "before-2"]
        assert await audit.flush() == 1
        assert [name for name, _ in await _written(sessionmaker)] == ["before-1", "before-2", "during"]

    async def test_a_full_buffer_drops_the_oldest_and_counts_them(
        self, sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics
    ) -> None:
        audit = TokenAuditLog(sessionmaker, metrics, max_buffer=3)
        for index in range(5):
            _hand_out(audit, name=f"svc-{index}")
        assert metrics.registry.get_sample_value("allegro_link_token_audit_dropped_total") == 2
        assert await audit.flush() == 3
        assert [name for name, _ in await _written(sessionmaker)] == ["svc-2", "svc-3", "svc-4"]

    async def test_a_failed_flush_keeps_its_records_in_order_for_the_next(
        self, audit: TokenAuditLog, inserts: QueryCounter, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        for index in range(3):
            _hand_out(audit, name=f"svc-{index}")

        def record_during_it_and_fail() -> None:
            _hand_out(audit, name="during")
            _refuse()

        inserts.before_next(record_during_it_and_fail)
        with pytest.raises(InjectedFailure):
            await audit.flush()
        assert await _written(sessionmaker) == []
        assert await audit.flush() == 4
        names = [name for name, _ in await _written(sessionmaker)]
        assert names == ["svc-0", "svc-1", "svc-2", "during"]


class TestWriter:
    async def test_records_are_written_when_the_interval_passes_not_when_handed_out(
        self, audit: TokenAuditLog, ticks: Ticks, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        audit.start()
        try:
            await ticks.writer_asleep()
            _hand_out(audit, name="first")
            _hand_out(audit, name="second")
            assert await _written(sessionmaker) == []
            await ticks.tick()
            assert [name for name, _ in await _written(sessionmaker)] == ["first", "second"]
            await ticks.tick()  # nothing new: nothing written again
            assert len(await _written(sessionmaker)) == 2
        finally:
            await audit.stop()
        assert ticks.asked == [INTERVAL] * 3

    async def test_a_failed_flush_does_not_stop_the_writer(
        self,
        audit: TokenAuditLog,
        ticks: Ticks,
        inserts: QueryCounter,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        audit.start()
        try:
            await ticks.writer_asleep()
            _hand_out(audit)
            inserts.before_next(_refuse)
            await ticks.tick()
            assert await _written(sessionmaker) == []
            await ticks.tick()
            assert len(await _written(sessionmaker)) == 1
        finally:
            await audit.stop()

    async def test_stop_writes_what_is_buffered_without_waiting_for_the_interval(
        self,
        audit: TokenAuditLog,
        ticks: Ticks,
        clock: WallClock,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        account = await insert_account(settings, last_used_at=LONG_AGO)
        audit.start()
        await ticks.writer_asleep()
        handed_out_at = clock.now
        _hand_out(audit, account.id, name="last")
        await audit.stop()
        assert await _written(sessionmaker) == [("last", handed_out_at)]
        assert await _last_used(sessionmaker, account.id) == handed_out_at
        assert ticks.asked == [INTERVAL]  # no interval passed: stop did not wait for one
