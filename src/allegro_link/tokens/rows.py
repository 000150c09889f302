"""The account row writes of a refresh, each in a transaction of its own (see the broker's docstring).

The broker decides; these functions only lock, mark, store and release the row.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.accounts.models import Account
from allegro_link.db import utcnow


async def lock_row(session: AsyncSession, account_id: uuid.UUID, lock_timeout_ms: int) -> Account | None:
    """The account, re-read and locked (`FOR UPDATE`) in a new transaction of `session`.

    Raises DBAPIError with SQLSTATE 55P03 (`db.is_lock_timeout`) when the lock is not had in time.
    """
    await session.execute(text(f"SET LOCAL lock_timeout = {lock_timeout_ms}"))
    return (
        await session.execute(
            select(Account)
            .where(Account.id == account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def mark_refreshing(session: AsyncSession, account: Account) -> None:
    """Commit "a refresh of this account may reach Allegro now" on the locked row.

    It must be visible to every replica before the call: once Allegro has answered, the stored access
    token is dead, and if the new pair then cannot be stored (the database goes, the process dies),
    this is all the others can know of it. Committing ends the transaction, so the row lock is given
    up here; the caller takes it again. One short transaction more per refresh, none per read.
    """
    account.refresh_started_at = utcnow()
    await session.commit()


async def release(session: AsyncSession, account: Account, *, clear_marker: bool = False) -> None:
    """End the transaction (and the row lock) but keep `account` readable as it is in memory.

    `clear_marker`: Allegro's answer proved that nothing was rotated, so the stored access token is
    as alive as before the attempt.
    """
    if clear_marker and account.refresh_started_at is not None:
        account_id = account.id
        session.expunge(account)
        await session.execute(update(Account).where(Account.id == account_id).values(refresh_started_at=None))
        await session.commit()
        account.refresh_started_at = None
        return
    if account in session:
        session.expunge(account)
    await session.rollback()


def token_columns(account: Account) -> dict[str, Any]:
    """What storing `account`'s current pair writes (the marker is cleared with it)."""
    return {
        "access_token_ciphertext": account.access_token_ciphertext,
        "access_token_expires_at": account.access_token_expires_at,
        "refresh_token_ciphertext": account.refresh_token_ciphertext,
        "refresh_token_expires_at": account.refresh_token_expires_at,
        "scope": account.scope,
        "last_refreshed_at": account.last_refreshed_at,
        "token_version": account.token_version,
        "forced_token_version": account.forced_token_version,
        "refresh_started_at": None,
        "updated_at": utcnow(),
    }


async def store_if_unchanged(
    sessionmaker: async_sessionmaker[AsyncSession],
    account_id: uuid.UUID,
    base_version: int,
    values: dict[str, Any],
) -> bool:
    """Store a pair refreshed from `base_version`, unless another pair has been stored since."""
    async with sessionmaker.begin() as session:
        result = await session.execute(
            update(Account)
            .where(Account.id == account_id, Account.token_version == base_version)
            .values(**values)
        )
    return bool(getattr(result, "rowcount", 0))
