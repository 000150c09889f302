"""Every write of the token path that runs outside the request's unit of work.

This is the documented exception to "the request owns the transaction": a refresh must commit the
rotated token before it answers, so these writes run in transactions of their own. The broker decides
(`broker.py`); the functions here only lock the row, mark a refresh as started, release the row, store a
rotated pair (retrying a failed commit, and holding a pair the database would not take until it does),
and flip an account to `relogin_required`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.accounts import transitions
from allegro_link.accounts.models import Account, ReloginReason
from allegro_link.accounts.service import AccountNotFound
from allegro_link.allegro.client import TokenSet
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import utcnow
from allegro_link.errors import DatabaseUnavailable
from allegro_link.tokens.problems import AllegroUnavailableProblem

# The broker's logger: these lines are steps of its refreshes, and keep the name they always had.
log = structlog.get_logger("allegro_link.tokens.broker")

COMMIT_RETRY_DELAYS = (0.05, 0.2, 0.5)
UNSAVED_RETRY_SECONDS = 1.0


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


async def require_relogin(
    sessionmaker: async_sessionmaker[AsyncSession],
    account_id: uuid.UUID,
    used_version: int,
    reason_for: Callable[[Account], ReloginReason],
) -> ReloginReason | Account:
    """Flag the account `relogin_required` (for `reason_for(account)`, read under the row lock).

    Unless another writer stored a pair since `used_version`: then nothing changes and the account,
    holding that live pair, is returned.
    """
    async with sessionmaker() as session:
        account = await session.get(Account, account_id, with_for_update=True, populate_existing=True)
        if account is None:
            raise AccountNotFound("No such account.")
        if account.token_version != used_version:
            await release(session, account)
            return account
        reason = reason_for(account)
        await transitions.relogin_required(session, account, reason, actor="token-broker")
        await session.commit()
    return reason


@dataclass(frozen=True, slots=True)
class UnsavedPair:
    """A pair Allegro issued that could not be stored yet; `base_version` is the row's version before it."""

    tokens: TokenSet
    base_version: int
    refreshed_at: datetime
    forced: bool


class RotatedPairs:
    """Puts rotated pairs on the row and commits them, whatever the database does meanwhile.

    A failed commit is retried a few times (`store_if_unchanged`). If the database stays away the pair
    is held in memory and written as soon as it can be, by a background task that asks `write_unsaved`
    (the broker's refresh of the account) to store it; the caller meanwhile gets 503, never an unsaved
    token.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: TokenVault,
        *,
        write_unsaved: Callable[[uuid.UUID], Awaitable[object]],
    ) -> None:
        self._sessionmaker = sessionmaker
        self._vault = vault
        self._write_unsaved = write_unsaved
        self._unsaved: dict[uuid.UUID, UnsavedPair] = {}
        self._writer: asyncio.Task[None] | None = None

    def holds_unsaved(self, account_id: uuid.UUID) -> bool:
        """True while a pair of the account waits to be stored (the stored one may be dead)."""
        return account_id in self._unsaved

    def take_unsaved(self, account_id: uuid.UUID) -> UnsavedPair | None:
        return self._unsaved.pop(account_id, None)

    def apply(self, account: Account, tokens: TokenSet, now: datetime, *, forced: bool) -> None:
        """Put the rotated pair on `account` (in its session; `commit` stores it)."""
        account.access_token_ciphertext = self._vault.seal(
            Account.access_token_ciphertext, account.id, tokens.access_token
        )
        account.access_token_expires_at = tokens.access_expires_at
        account.refresh_token_ciphertext = self._vault.seal(
            Account.refresh_token_ciphertext, account.id, tokens.refresh_token
        )
        account.refresh_token_expires_at = tokens.refresh_expires_at
        if tokens.scope:
            account.scope = tokens.scope
        account.last_refreshed_at = now
        account.token_version += 1
        account.forced_token_version = account.token_version if forced else None
        account.refresh_started_at = None

    async def commit(self, session: AsyncSession, account: Account, pair: UnsavedPair) -> None:
        """Commit the pair `apply` put on `account`, or raise (503) once it is held for later."""
        # Read before the commit: if it fails, the session expires `account`.
        account_id = account.id
        values = token_columns(account)
        try:
            await session.commit()
            return
        except Exception as exc:
            log.error("token.refresh.commit_failed", account_id=str(account_id), error=type(exc).__name__)
            with contextlib.suppress(Exception):
                await release(session, account)
        for delay in COMMIT_RETRY_DELAYS:
            await asyncio.sleep(delay)
            try:
                stored = await store_if_unchanged(self._sessionmaker, account_id, pair.base_version, values)
            except Exception as exc:
                log.warning(
                    "token.refresh.commit_retry_failed", account_id=str(account_id), error=type(exc).__name__
                )
                continue
            if stored:
                log.info("token.refresh.commit_retried", account_id=str(account_id))
                return
            # Someone else stored a newer pair meanwhile (using the old refresh token within Allegro's
            # grace). Theirs is the live pair; ours must not be handed out.
            raise AllegroUnavailableProblem(1.0, "The account was refreshed concurrently; retry.")
        self._unsaved[account_id] = pair
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_unsaved_forever(), name="token-unsaved-writer")
        raise DatabaseUnavailable("The refreshed token could not be stored yet; retry shortly.")

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write_unsaved_forever(self) -> None:
        while self._unsaved:
            await asyncio.sleep(UNSAVED_RETRY_SECONDS)
            for account_id in list(self._unsaved):
                try:
                    await self._write_unsaved(account_id)
                except Exception as exc:
                    log.warning(
                        "token.unsaved.retry_failed", account_id=str(account_id), error=type(exc).__name__
                    )


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
