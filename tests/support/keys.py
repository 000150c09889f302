"""Service API keys for tests, created the way the CLI creates them."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.auth.api_keys import create_api_key
from allegro_link.db import create_sessionmaker
from allegro_link.settings import Settings


async def new_api_key(settings: Settings, *scopes: str, name: str | None = None) -> str:
    import secrets

    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await create_api_key(
                session, name=name or f"svc-{secrets.token_hex(4)}", scopes=list(scopes or ("tokens:read",))
            )
    finally:
        await engine.dispose()
