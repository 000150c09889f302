"""The token path seen from outside: a linked account's token endpoint, its stored pair, and what the fake
Allegro saw. One helper set for the token, reliability and deployment tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account
from allegro_link.allegro.client import ALLEGRO_MEDIA_TYPE
from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.vault import SealedColumn, TokenVault
from allegro_link.db import utcnow
from allegro_link.settings import Settings
from tests.support.factories import bearer, owner_token
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness

ME_HEADERS = {"Accept": ALLEGRO_MEDIA_TYPE}

# Settings for a service whose Allegro calls the fake holds (a `hold` fault) until the test releases
# them: no wait of the service's own (the read timeout, the refresh deadline, and the two waits that
# must be longer than it) ends first, however slow the machine is. Also for claims that are not about
# those waits (single flight across processes), which a loaded machine would otherwise turn into 503s.
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


async def stored_row(settings: Settings, account_id: str) -> Account:
    """The account's row, read straight from the database (its token columns still sealed)."""
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(select(Account).where(Account.id == uuid.UUID(account_id)))).one()
    finally:
        await engine.dispose()
    return Account(**row._mapping)


async def stored_pair(settings: Settings, account_id: str) -> StoredPair:
    """The account's row, decrypted, read straight from the database."""
    row = await stored_row(settings, account_id)
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
    """Whether the fake Allegro's `/me` accepts `access_token`."""
    if access_token is None:
        return False
    response = await fake.get("/me", headers={**ME_HEADERS, "Authorization": f"Bearer {access_token}"})
    return response.status_code == 200


async def refresh_calls(harness: LinkHarness) -> int:
    """The refresh_token grants the fake Allegro has received (counted on arrival, faulted ones too)."""
    calls: int = (await harness.stats())["token_calls"]["refresh_token"]
    return calls


async def add_fault(fake: httpx.AsyncClient, endpoint: str = "token", **fault: Any) -> None:
    """Queue a fault for the fake Allegro's next calls to `endpoint` (see `fake_allegro/controls.py`)."""
    response = await fake.post("/__fake__/faults", json={"endpoint": endpoint, **fault})
    assert response.status_code == 201, response.text


@dataclass
class Linked:
    """A linked account and a service key that may read its token."""

    harness: LinkHarness
    account_id: str
    key: str

    @property
    def settings(self) -> Settings:
        return self.harness.settings

    async def token(
        self, query: str = "", *, via: httpx.AsyncClient | None = None, base_url: str = ""
    ) -> httpx.Response:
        """GET …/token (`query` e.g. "?min_valid_for=300"), from the harness's service unless `via`."""
        http = via or self.harness.service
        return await http.get(f"{base_url}/accounts/{self.account_id}/token{query}", headers=bearer(self.key))

    async def access_token(self) -> str:
        """The access token GET …/token serves now."""
        response = await self.token()
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def refresh(self, body: dict[str, Any] | None = None) -> httpx.Response:
        """POST …/token/refresh, with `body` (e.g. the rejected token) or none."""
        return await self.harness.service.post(
            f"/accounts/{self.account_id}/token/refresh", json=body, headers=bearer(self.key)
        )

    async def refreshed_token(self, body: dict[str, Any] | None = None) -> str:
        """The access token POST …/token/refresh answers with."""
        response = await self.refresh(body)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def expire_access(self, seconds_left: float = -1) -> None:
        await expire_access(self.settings, self.account_id, seconds_left)

    async def stored(self) -> StoredPair:
        return await stored_pair(self.settings, self.account_id)

    async def row(self) -> Account:
        return await stored_row(self.settings, self.account_id)

    async def status(self) -> str:
        """The account's status as its owner sees it through the API."""
        response = await self.harness.service.get(
            f"/accounts/{self.account_id}", headers=bearer(owner_token("owner-a"))
        )
        status: str = response.json()["status"]
        return status

    async def fault(self, endpoint: str = "token", **fault: Any) -> None:
        await add_fault(self.harness.fake, endpoint, **fault)

    async def refresh_calls(self) -> int:
        return await refresh_calls(self.harness)

    async def stored_pair_works(self) -> bool:
        return await works_at_allegro(self.harness.fake, (await self.stored()).access_token)


async def link_account(
    harness: LinkHarness, login: str = "Sprzedawca1", *, key_settings: Settings | None = None
) -> Linked:
    """Link `login` for owner-a through the whole flow, and create a `tokens:read` key (in the database
    `key_settings` name, when the harness's own cannot be used for that)."""
    response = await harness.link("owner-a", login)
    assert response.status_code == 200, response.text
    key = await new_api_key(key_settings or harness.settings, "tokens:read")
    return Linked(harness, response.json()["account"]["id"], key)
