"""The floor: the smallest FastAPI + uvicorn app that answers the token and list requests the bench sends.

What a competent minimal implementation on the same stack would do, and nothing more: a plain asyncpg
pool of the service's size (ALLEGRO_LINK_DB_POOL_SIZE connections, opened at start), asyncpg's prepared
statements, JSON written with orjson.

- `GET /accounts/{id}/token`: the Bearer header compared in constant time with one API key
  (BENCH_FLOOR_API_KEY), one primary-key SELECT of the columns the token response needs, the response
  in the service's shape. The ciphertext is sent base64-encoded in place of the token: no decryption,
  no audit record, no metrics, no log line.
- `GET /accounts`: the owner's HS256 JWT verified with PyJWT (signature, `exp`, `sub`), the first page
  of the owner's accounts by id (the columns the service returns) and the two counts in one more
  statement, each item's status, re-login deadline and `relogin_soon` computed as the service defines
  them, the page in the service's shape.

Run: uvicorn floor_app:create_app --factory --app-dir bench (ALLEGRO_LINK_DATABASE_URL,
ALLEGRO_LINK_OWNER_JWT_SECRET and BENCH_FLOOR_API_KEY set).
"""

from __future__ import annotations

import hmac
import os
import uuid
from base64 import b64encode, urlsafe_b64encode
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import orjson
from fastapi import FastAPI, Header, HTTPException, Query, Response

ACCOUNT_ROW = """
SELECT id, allegro_user_id, login, access_token_ciphertext, access_token_expires_at, scope
FROM accounts WHERE id = $1
"""
PAGE = """
SELECT id, owner_id, allegro_user_id, login, status, relogin_reason, status_changed_at, linked_at,
       last_refreshed_at, access_token_expires_at, refresh_token_expires_at, last_used_at
FROM accounts WHERE owner_id = $1 ORDER BY id LIMIT $2
"""
# The service's two counts (accounts/status.py, accounts/deadline.py), in one statement.
COUNTS = """
SELECT
  count(*) FILTER (WHERE status = 'relogin_required'
    OR (status = 'active' AND refresh_token_expires_at IS NOT NULL AND refresh_token_expires_at <= now())),
  count(*) FILTER (WHERE status = 'active'
    AND (refresh_token_expires_at IS NULL OR refresh_token_expires_at > now())
    AND (refresh_token_expires_at <= now() + $2::interval
         OR last_used_at <= now() + ($2::interval - interval '90 days')))
FROM accounts WHERE owner_id = $1
"""
USE_RULE = timedelta(days=90)


def _dsn() -> str:
    return os.environ["ALLEGRO_LINK_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")


def _pool_size() -> int:
    return int(os.environ.get("ALLEGRO_LINK_DB_POOL_SIZE", "20"))  # the service's default (settings.py)


def _item(row: asyncpg.Record, now: datetime, window: timedelta) -> dict[str, Any]:
    status, reason, changed = row["status"], row["relogin_reason"], row["status_changed_at"]
    expiry, used = row["refresh_token_expires_at"], row["last_used_at"]
    if status == "active" and expiry is not None and expiry <= now:
        status, reason, changed = "relogin_required", "refresh_token_expired", expiry
    deadline = None
    if status == "active":
        known = [m for m in (expiry, used + USE_RULE if used is not None else None) if m is not None]
        deadline = min(known) if known else None
    return {
        "id": str(row["id"]),
        "owner_id": row["owner_id"],
        "allegro_user_id": row["allegro_user_id"],
        "login": row["login"],
        "status": status,
        "relogin_reason": reason,
        "status_changed_at": changed,
        "linked_at": row["linked_at"],
        "last_refreshed_at": row["last_refreshed_at"],
        "access_token_expires_at": row["access_token_expires_at"],
        "refresh_token_expires_at": expiry,
        "last_used_at": used,
        "relogin_deadline": deadline,
        "relogin_soon": deadline is not None and deadline - now <= window,
    }


def _cursor(last: uuid.UUID) -> str:
    return urlsafe_b64encode(last.bytes).decode().rstrip("=")  # as accounts/service.py writes it


def create_app() -> FastAPI:
    api_key = f"Bearer {os.environ['BENCH_FLOOR_API_KEY']}".encode()
    jwt_secret = os.environ["ALLEGRO_LINK_OWNER_JWT_SECRET"]
    window = timedelta(days=float(os.environ.get("ALLEGRO_LINK_RELOGIN_SOON_DAYS", "14")))
    pools: list[asyncpg.Pool] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        size = _pool_size()
        pools.append(await asyncpg.create_pool(_dsn(), min_size=size, max_size=size))
        yield
        await pools[0].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/accounts/{account_id}/token")
    async def token(account_id: uuid.UUID, authorization: str = Header("")) -> Response:
        if not hmac.compare_digest(authorization.encode(), api_key):
            raise HTTPException(401)
        row = await pools[0].fetchrow(ACCOUNT_ROW, account_id)
        if row is None:
            raise HTTPException(404)
        body = {
            "account_id": str(row["id"]),  # asyncpg's own UUID type, which orjson does not know
            "allegro_user_id": row["allegro_user_id"],
            "login": row["login"],
            "access_token": b64encode(row["access_token_ciphertext"]).decode(),
            "token_type": "bearer",
            "expires_at": row["access_token_expires_at"],
            "scope": row["scope"],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/accounts")
    async def accounts(authorization: str = Header(""), limit: int = Query(50, ge=1, le=200)) -> Response:
        try:
            claims = jwt.decode(
                authorization.removeprefix("Bearer "),
                jwt_secret,
                algorithms=["HS256"],
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError:
            raise HTTPException(401) from None
        owner = claims["sub"]
        async with pools[0].acquire() as connection:
            rows = await connection.fetch(PAGE, owner, limit + 1)
            counts = await connection.fetchrow(COUNTS, owner, window)
        now = datetime.now(UTC)
        body = {
            "items": [_item(row, now, window) for row in rows[:limit]],
            "next_cursor": _cursor(rows[limit - 1]["id"]) if len(rows) > limit else None,
            "relogin_required_count": counts[0],
            "relogin_soon_count": counts[1],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return app
