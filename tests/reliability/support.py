"""A linked account seen from outside: its token endpoint, its stored pair, and the fake Allegro."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account
from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.vault import SealedColumn, TokenVault
from allegro_link.db import utcnow
from allegro_link.settings import Settings
from tests.support.factories import bearer, owner_token
from tests.support.link import LinkHarness

ME_HEADERS = {"Accept": "application/vnd.allegro.public.v1+json"}

# Settings for a service whose Allegro calls the fake holds (a `hold` fault) until the test releases
# them: no wait of the service's own (the read timeout, the refresh deadline, and the two waits that
# must be longer than it) ends first, however slow the machine is.
PATIENT_WAITS: dict[str, Any] = {
    "allegro_read_timeout_seconds": 50.0,
    "token_refresh_deadline_seconds": 55.0,
    "token_refresh_lock_timeout_seconds": 65.0,
    "db_statement_timeout_seconds": 75.0,
}


@dataclass(frozen=True)
class StoredPair:
    access_token: str | None
    refresh_token: str | None
    version: int
    status: str


async def stored_pair(settings: Settings, account_id: str) -> StoredPair:
    """The account's row, decrypted, read straight from the database."""
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(select(Account).where(Account.id == uuid.UUID(account_id)))).one()
    finally:
        await engine.dispose()
    vault = TokenVault(KeyRing(settings.encryption_key_ring))
    account_uuid = uuid.UUID(account_id)

    def open_(column: SealedColumn, blob: bytes | None) -> str | None:
        return vault.open(column, account_uuid, blob) if blob is not None else None

    return StoredPair(
        access_token=open_(Account.access_token_ciphertext, row.access_token_ciphertext),
        refresh_token=open_(Account.refresh_token_ciphertext, row.refresh_token_ciphertext),
        version=row.token_version,
        status=str(row.status.value if hasattr(row.status, "value") else row.status),
    )


async def expire_access(settings: Settings, account_id: str | None = None, seconds_left: float = -1) -> None:
    """Make the stored access token (of one account, or all) look stale, so the next read refreshes."""
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.begin() as connection:
            statement = update(Account).values(
                access_token_expires_at=utcnow() + timedelta(seconds=seconds_left)
            )
            if account_id is not None:
                statement = statement.where(Account.id == uuid.UUID(account_id))
            await connection.execute(statement)
    finally:
        await engine.dispose()


async def works_at_allegro(fake: httpx.AsyncClient, access_token: str | None) -> bool:
    if access_token is None:
        return False
    response = await fake.get("/me", headers={**ME_HEADERS, "Authorization": f"Bearer {access_token}"})
    return response.status_code == 200


@dataclass
class Linked:
    harness: LinkHarness
    account_id: str
    key: str

    @property
    def settings(self) -> Settings:
        return self.harness.settings

    async def token(self, base_url: str | None = None, **params: Any) -> httpx.Response:
        path = f"/accounts/{self.account_id}/token"
        if base_url is None:
            return await self.harness.service.get(path, params=params, headers=bearer(self.key))
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            return await http.get(path, params=params, headers=bearer(self.key))

    async def expire_access(self, seconds_left: float = -1) -> None:
        await expire_access(self.settings, self.account_id, seconds_left)

    async def stored(self) -> StoredPair:
        return await stored_pair(self.settings, self.account_id)

    async def status(self) -> str:
        response = await self.harness.service.get(
            f"/accounts/{self.account_id}", headers=bearer(owner_token("owner-a"))
        )
        status: str = response.json()["status"]
        return status

    async def fault(self, endpoint: str = "token", **fault: Any) -> None:
        response = await self.harness.fake.post("/__fake__/faults", json={"endpoint": endpoint, **fault})
        assert response.status_code == 201, response.text

    async def refresh_calls(self) -> int:
        calls: int = (await self.harness.stats())["token_calls"]["refresh_token"]
        return calls

    async def stored_pair_works(self) -> bool:
        return await works_at_allegro(self.harness.fake, (await self.stored()).access_token)
