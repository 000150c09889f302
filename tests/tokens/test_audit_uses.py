"""A token handed out is a use of the account: written with the audit's batched flush, never per read."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.accounts.models import Account
from allegro_link.db import utcnow
from allegro_link.ops.metrics import Metrics
from allegro_link.settings import Settings
from allegro_link.tokens.audit import TokenAuditLog
from allegro_link.tokens.models import TokenIssue
from tests.support.accounts import insert_account

LONG_AGO = timedelta(days=60)


@pytest.fixture
def audit(sessionmaker: async_sessionmaker[AsyncSession]) -> TokenAuditLog:
    return TokenAuditLog(sessionmaker, Metrics())


@pytest.fixture
async def account(settings: Settings) -> Account:
    """An account last used long ago."""
    return await insert_account(settings, last_used_at=utcnow() - LONG_AGO)


def _hand_out(audit: TokenAuditLog, account_id: uuid.UUID) -> None:
    audit.record(
        account_id=account_id, api_key_id=uuid.uuid4(), api_key_name="svc", token_version=1, refreshed=False
    )


async def _last_used(sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> datetime:
    async with sessionmaker() as session:
        used = (
            await session.execute(select(Account.last_used_at).where(Account.id == account_id))
        ).scalar_one()
    assert used is not None
    return used


async def _issues(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(TokenIssue))).scalar_one())


class TestUses:
    async def test_last_used_at_moves_at_the_flush_not_at_the_read(
        self, account: Account, audit: TokenAuditLog, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        handed_out_after = utcnow()
        _hand_out(audit, account.id)
        _hand_out(audit, account.id)

        assert await _last_used(sessionmaker, account.id) < handed_out_after
        assert await audit.flush() == 2
        assert await _last_used(sessionmaker, account.id) >= handed_out_after

    async def test_a_row_held_by_a_refresh_is_skipped_and_written_by_a_later_flush(
        self, account: Account, audit: TokenAuditLog, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        handed_out_after = utcnow()
        _hand_out(audit, account.id)

        async with sessionmaker() as refresh:
            await refresh.execute(
                text("SELECT 1 FROM accounts WHERE id = :id FOR UPDATE"), {"id": account.id}
            )
            # Waiting for the lock would hang here: the flush must skip the row and still write the record.
            assert await audit.flush() == 1
            await refresh.rollback()
        assert await _issues(sessionmaker) == 1
        assert await _last_used(sessionmaker, account.id) < handed_out_after

        assert await audit.flush() == 0  # no new record, but the use left over from last time
        assert await _last_used(sessionmaker, account.id) >= handed_out_after

    async def test_a_use_never_moves_last_used_at_back(
        self, settings: Settings, audit: TokenAuditLog, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        later = utcnow() + timedelta(minutes=5)  # e.g. a keep-alive call another replica just made
        account = await insert_account(settings, last_used_at=later)
        _hand_out(audit, account.id)
        await audit.flush()
        assert await _last_used(sessionmaker, account.id) == later
