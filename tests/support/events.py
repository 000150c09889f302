"""Appending events the way the transitions do, and reading the feed to its end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from allegro_link.accounts.events import EventType, NewEvent
from allegro_link.accounts.models import Account, AccountStatus, ReloginReason
from allegro_link.db import create_sessionmaker, uuid7
from allegro_link.settings import Settings


def loose_account(owner_id: str = "owner-a", account_id: uuid.UUID | None = None) -> Account:
    """An account object for an event's snapshot; the event log has no foreign key to accounts."""
    return Account(
        id=account_id or uuid7(),
        owner_id=owner_id,
        login="Sprzedawca",
        allegro_user_id="123",
        status=AccountStatus.RELOGIN_REQUIRED,
        relogin_reason=ReloginReason.GRANT_REVOKED,
    )


def relogin_events(count: int, owner_id: str = "owner-a", account: Account | None = None) -> list[NewEvent]:
    return [
        NewEvent(
            account or loose_account(owner_id),
            EventType.RELOGIN_REQUIRED,
            "test",
            {"reason": "grant_revoked"},
        )
        for _ in range(count)
    ]


@asynccontextmanager
async def open_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session on its own engine, so that a test can hold a transaction open beside the app's."""
    engine = create_async_engine(settings.database_url.get_secret_value(), pool_size=2)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


async def read_feed_to_end(
    client: httpx.AsyncClient, key: str, cursor: str | None, *, wait: float = 0, **params: Any
) -> tuple[list[dict[str, Any]], str]:
    """Every page from `cursor` until an empty one; returns the items and the last cursor."""
    items: list[dict[str, Any]] = []
    while True:
        query = {"limit": 500, "wait": wait, **params} | ({"after": cursor} if cursor else {})
        response = await client.get("/events", params=query, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        body = response.json()
        cursor = body["next_cursor"]
        if not body["items"]:
            return items, cursor
        items.extend(body["items"])
