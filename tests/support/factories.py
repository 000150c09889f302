"""Test data builders."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from allegro_link.settings import Settings

OWNER_JWT_SECRET = "test-owner-jwt-secret-0123456789-abcdef"
ENCRYPTION_KEY = "t1:" + base64.b64encode(bytes(range(32))).decode()
OLD_ENCRYPTION_KEY = "t0:" + base64.b64encode(bytes(range(32, 64))).decode()
CLIENT_ID = "allegro-link-test"
CLIENT_SECRET = "allegro-link-test-secret"
REDIRECT_URI = "http://localhost:8000/oauth/callback"
ALLOWED_RETURN = "https://panel.example.com/allegro/"


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "encryption_keys": ENCRYPTION_KEY,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
        "allegro_auth_url": "https://allegro.test",
        "allegro_api_url": "https://api.allegro.test",
        "return_url_allowlist": ALLOWED_RETURN,
        "owner_jwt_secret": OWNER_JWT_SECRET,
        "log_json": True,
        "keepalive_enabled": False,
        # Four xdist workers share one PostgreSQL (100 connections by default), and a test may run two
        # `serve` processes with 200 callers: at the production default (20 + 10 per process) the suite
        # could exhaust the server ("too many clients"). Big enough for every concurrency claim tested.
        "db_pool_size": 8,
        "db_max_overflow": 4,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


def end_to_end_settings(database_url: str, ports: tuple[int, int], **overrides: Any) -> Settings:
    """The service on 127.0.0.1 talking to the fake Allegro over real HTTP; `ports` = (fake, service)."""
    fake_port, service_port = ports
    fake_url = f"http://127.0.0.1:{fake_port}"
    options: dict[str, Any] = {
        "allegro_auth_url": fake_url,
        "allegro_api_url": fake_url,
        "redirect_uri": f"http://localhost:{service_port}/oauth/callback",
    }
    return make_settings(database_url, **(options | overrides))


def utc_in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def owner_token(owner_id: str, *, lifetime: int = 3600, **claims: Any) -> str:
    import time

    import jwt

    now = int(time.time())
    payload: dict[str, Any] = {"sub": owner_id, "iat": now, "exp": now + lifetime, **claims}
    return jwt.encode(payload, OWNER_JWT_SECRET, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
