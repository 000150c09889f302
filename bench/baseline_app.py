"""The baseline: the smallest FastAPI + uvicorn app that reads an account row and returns it as JSON.

Same database pool as `allegro-link serve` (built by `allegro_link.db.create_engine` from the same
ALLEGRO_LINK_DB_* settings: pool size, overflow, closed-connection check, timeouts), one primary-key
SELECT of the whole row per request, in autocommit (no BEGIN/ROLLBACK around it). No auth, no
decryption, no audit, no logging, no metrics: what is left is the HTTP + framework + one database
read floor.

Run: uvicorn baseline_app:create_app --factory --app-dir bench (with ALLEGRO_LINK_DATABASE_URL set).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from sqlalchemy import text

from allegro_link.db import create_engine
from allegro_link.settings import DatabaseSettings

ROW = text("SELECT * FROM accounts WHERE id = :id")


def create_app() -> FastAPI:
    engine = create_engine(DatabaseSettings())
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/accounts/{account_id}/token")
    async def token(account_id: uuid.UUID) -> dict[str, Any]:
        async with autocommit.connect() as connection:
            row = (await connection.execute(ROW, {"id": account_id})).one_or_none()
        if row is None:
            raise HTTPException(404)
        return {
            "account_id": row.id,
            "allegro_user_id": row.allegro_user_id,
            "login": row.login,
            "access_token": base64.b64encode(row.access_token_ciphertext).decode(),
            "token_type": "bearer",
            "expires_at": row.access_token_expires_at,
            "scope": row.scope,
        }

    return app
