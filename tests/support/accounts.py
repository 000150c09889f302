"""Account factory: rows written straight to the database, tokens sealed like the service does."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account, AccountStatus, ReloginReason
from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import create_sessionmaker, utcnow, uuid7
from allegro_link.settings import Settings


async def insert_account(
    settings: Settings,
    *,
    owner_id: str = "owner-a",
    login: str | None = "Sprzedawca",
    allegro_user_id: str | None = None,
    status: AccountStatus = AccountStatus.ACTIVE,
    reason: ReloginReason | None = None,
    access_token: str | None = "access-token-plain",
    refresh_token: str | None = "refresh-token-plain",
    access_expires_in: timedelta = timedelta(hours=12),
    refresh_expires_at: datetime | None = None,
    **extra: Any,
) -> Account:
    vault = TokenVault(KeyRing(settings.encryption_key_ring))
    now = utcnow()
    account = Account(
        id=uuid7(),
        owner_id=owner_id,
        login=login,
        allegro_user_id=allegro_user_id if allegro_user_id is not None else str(uuid.uuid4().int)[:9],
        status=status,
        relogin_reason=reason,
        status_changed_at=now,
        linked_at=now,
        last_refreshed_at=now,
        refresh_token_expires_at=refresh_expires_at or now + timedelta(days=90),
        token_version=1,
        **extra,
    )
    if access_token is not None:
        account.access_token_ciphertext = vault.seal(
            Account.access_token_ciphertext, account.id, access_token
        )
        account.access_token_expires_at = now + access_expires_in
    if refresh_token is not None:
        account.refresh_token_ciphertext = vault.seal(
            Account.refresh_token_ciphertext, account.id, refresh_token
        )
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with create_sessionmaker(engine).begin() as session:
            session.add(account)
    finally:
        await engine.dispose()
    return account


async def update_account(settings: Settings, account_id: uuid.UUID | str, **values: Any) -> None:
    """Change an account's row behind the service's back (expire a token, age a refresh, …)."""
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(Account).where(Account.id == uuid.UUID(str(account_id))).values(**values)
            )
    finally:
        await engine.dispose()
