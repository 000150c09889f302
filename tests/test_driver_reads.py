"""Reads on the pool's asyncpg connections (driver_reads.py): SQLAlchemy's values, its care of the pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from allegro_link.accounts.models import Account, AccountStatus, ReloginReason
from allegro_link.db import create_engine, uuid7
from allegro_link.driver_reads import DriverRead
from allegro_link.errors import DatabaseUnavailable
from allegro_link.settings import Settings
from tests.support.accounts import insert_account
from tests.support.factories import make_settings

ROW = select(*Account.__table__.columns).where(Account.id == bindparam("account_id"))
BACKEND = select(func.pg_backend_pid().label("pid"))


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine whose pool holds one connection, so that reusing it or not shows in the backend pid."""
    engine = create_engine(
        make_settings(
            database_url,
            db_pool_size=1,
            db_max_overflow=0,
            db_statement_timeout_seconds=0.5,
            token_refresh_lock_timeout_seconds=0.4,
            token_refresh_deadline_seconds=0.3,
        )
    )
    yield engine
    await engine.dispose()


async def test_values_come_back_as_sqlalchemy_returns_them(settings: Settings, engine: AsyncEngine) -> None:
    account = await insert_account(
        settings, status=AccountStatus.RELOGIN_REQUIRED, reason=ReloginReason.GRANT_REVOKED
    )
    async with engine.connect() as connection:
        expected = dict((await connection.execute(ROW, {"account_id": account.id})).mappings().one())

    row = await DriverRead(engine, ROW).one_or_none(account_id=account.id)

    assert row == expected
    assert row is not None
    assert type(row["status"]) is AccountStatus
    assert type(row["relogin_reason"]) is ReloginReason
    assert row["linked_at"].tzinfo is not None


async def test_no_row_is_none(engine: AsyncEngine) -> None:
    assert await DriverRead(engine, ROW).one_or_none(account_id=uuid7()) is None


async def test_a_connection_that_dies_in_a_read_is_not_reused(one_connection: AsyncEngine) -> None:
    pid = (await DriverRead(one_connection, BACKEND).one_or_none() or {})["pid"]
    killed_in_flight = select(func.pg_terminate_backend(func.pg_backend_pid()).label("killed"))

    with pytest.raises(DatabaseUnavailable):
        await DriverRead(one_connection, killed_in_flight).one_or_none()

    assert one_connection.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    after = await DriverRead(one_connection, BACKEND).one_or_none()
    assert after is not None
    assert after["pid"] != pid


async def test_a_statement_timeout_answers_unavailable_and_keeps_the_connection(
    one_connection: AsyncEngine,
) -> None:
    pid = (await DriverRead(one_connection, BACKEND).one_or_none() or {})["pid"]

    with pytest.raises(DatabaseUnavailable):
        await DriverRead(one_connection, select(func.pg_sleep(5).label("slept"))).one_or_none()

    assert one_connection.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert (await DriverRead(one_connection, BACKEND).one_or_none() or {})["pid"] == pid


async def test_a_wrong_statement_is_not_an_outage(one_connection: AsyncEngine) -> None:
    wrong = select(func.to_number("not a number", "999").label("n"))
    with pytest.raises(asyncpg.InvalidTextRepresentationError):
        await DriverRead(one_connection, wrong).one_or_none()
    assert one_connection.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_burst_of_reads_queues_in_order_rather_than_timing_out_in_the_pool(database_url: str) -> None:
    """More reads at once than the pool holds: without the gate the late ones waited in the pool's own
    queue, which is not first come first served, and ran out of its timeout (`db_connect_timeout_seconds`)."""
    engine = create_engine(
        make_settings(database_url, db_pool_size=2, db_max_overflow=0, db_connect_timeout_seconds=1.0)
    )
    try:
        nap = DriverRead(engine, select(func.pg_sleep(0.05).label("slept")))
        # 60 naps of 50 ms on 2 connections: the last ones wait about 1.5 s, past the pool's 1 s.
        await asyncio.gather(*(nap.one_or_none() for _ in range(60)))
    finally:
        await engine.dispose()
