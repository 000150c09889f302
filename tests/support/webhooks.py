"""Webhook endpoints for tests, created the way the CLI creates them."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import create_sessionmaker
from allegro_link.settings import Settings
from allegro_link.webhooks.endpoints import add_endpoint


async def new_endpoint(settings: Settings, url: str, *types: str) -> tuple[uuid.UUID, str]:
    """A new endpoint: its id and its `whsec_…` secret."""
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await add_endpoint(
                session, TokenVault(KeyRing(settings.encryption_key_ring)), url=url, event_types=list(types)
            )
    finally:
        await engine.dispose()
