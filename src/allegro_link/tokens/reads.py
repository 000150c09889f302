"""The token path's reads, run on every request for a token: the account row, and the token it holds."""

from __future__ import annotations

import asyncio
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from allegro_link.accounts.models import Account, detached_account
from allegro_link.accounts.service import AccountNotFound
from allegro_link.crypto.vault import TokenVault
from allegro_link.driver_reads import driver_read
from allegro_link.tokens.problems import ReloginRequired

# The row's columns, to build a detached Account from, but the refresh token's ciphertext: nothing
# that reads the row this way needs it (a refresh locks the row and reads it again). The two
# ciphertexts take a row over PostgreSQL's TOAST threshold, so one of them is stored out of line and
# costs the server a second lookup to read; and it is 1.4 kB less to send. Reading it on the Account
# returned raises.
_ACCOUNT_ROW = select(
    *(
        column
        for column in Account.__table__.columns
        if column is not Account.__table__.c.refresh_token_ciphertext
    )
).where(Account.id == bindparam("account_id"))


@dataclass(frozen=True, slots=True)
class IssuedToken:
    account_id: uuid.UUID
    allegro_user_id: str | None
    login: str | None
    access_token: str
    expires_at: datetime
    scope: str | None
    token_version: int
    refreshed: bool


class AccountReads:
    """Reads of the account row as it is now, queued first come first served at `gate`."""

    def __init__(self, engine: AsyncEngine, concurrency: int) -> None:
        # Same pool as the sessions; on the driver, as the hottest read (driver_reads.py).
        self._row = driver_read(engine, _ACCOUNT_ROW)
        # Readers queue here rather than in the pool, which is not fair under a burst
        # (docs/performance.md). Sized to the pool: no reader waits for a connection the pool has.
        self.gate = asyncio.Semaphore(concurrency)

    async def read(self, account_id: uuid.UUID) -> Account:
        async with self.gate:
            return await self.fetch(account_id)

    async def fetch(self, account_id: uuid.UUID) -> Account:
        """The account row as it is now (the caller holds `gate`): one SELECT in autocommit, no ORM session.

        A session would wrap the SELECT in BEGIN and ROLLBACK (two more round trips) and track the
        object, which nothing here needs. The Account returned is detached, as one read through a
        closed session would be.
        """
        row = await self._row.one_or_none(account_id=account_id)
        if row is None:
            raise AccountNotFound("No such account.")
        return detached_account(row)


def issue(vault: TokenVault, account: Account, *, refreshed: bool) -> IssuedToken:
    """The access token `account` holds, opened."""
    if account.access_token_ciphertext is None or account.access_token_expires_at is None:
        raise ReloginRequired("The account holds no token; log it in again.")
    return IssuedToken(
        account_id=account.id,
        allegro_user_id=account.allegro_user_id,
        login=account.login,
        access_token=vault.open(Account.access_token_ciphertext, account.id, account.access_token_ciphertext),
        expires_at=account.access_token_expires_at,
        scope=account.scope,
        token_version=account.token_version,
        refreshed=refreshed,
    )


def is_current(vault: TokenVault, account: Account, presented: str) -> bool:
    """True when `presented` is the access token `account` holds (compared in constant time)."""
    if account.access_token_ciphertext is None:
        return False
    current = vault.open(Account.access_token_ciphertext, account.id, account.access_token_ciphertext)
    return hmac.compare_digest(current.encode(), presented.encode())
