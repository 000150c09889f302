"""Bulk-insert realistic accounts with COPY: active, tokens sealed by the project's TokenVault.

Tokens are shaped like Allegro's (RS256 JWTs carrying every scope, about 1.4 kB each) so that rows,
TOAST and decryption cost what they cost in production. Access tokens are valid for 2-12 more hours
and refresh tokens for 20-90 more days, and accounts were last used 0-29 days ago: nothing is due for
a refresh or a keep-alive call (window 14 days, use after 30), so the fresh-token path is exercised and
the keep-alive has nothing to do.
"""

from __future__ import annotations

import base64
import json
import os
import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from allegro_link.accounts.models import Account
from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import uuid7
from allegro_link.fake_allegro.config import ALL_SCOPES
from allegro_link.settings import parse_encryption_keys

COLUMNS = (
    "id",
    "owner_id",
    "allegro_user_id",
    "login",
    "status",
    "relogin_reason",
    "status_changed_at",
    "linked_at",
    "last_refreshed_at",
    "access_token_ciphertext",
    "access_token_expires_at",
    "refresh_token_ciphertext",
    "refresh_token_expires_at",
    "scope",
    "token_version",
    "created_at",
    "updated_at",
    "last_used_at",
)
OWNERS = 1000
BATCH = 10_000
SCOPE = " ".join(ALL_SCOPES)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jwt_like(claims: dict[str, object]) -> str:
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(os.urandom(256))}"


def owner_of(index: int) -> str:
    return f"owner-{index % OWNERS:04d}"


async def seed_accounts(dsn: str, encryption_keys: str, start: int, stop: int) -> list[uuid.UUID]:
    """Insert accounts number `start` .. `stop - 1`; returns their ids."""
    vault = TokenVault(KeyRing(parse_encryption_keys(encryption_keys)))
    rng = random.Random(start)  # noqa: S311 - the same data in every run, not security
    now = datetime.now(UTC)
    ids: list[uuid.UUID] = []
    connection = await asyncpg.connect(dsn)
    try:
        for batch_start in range(start, stop, BATCH):
            records = []
            for index in range(batch_start, min(stop, batch_start + BATCH)):
                account_id = uuid7()
                ids.append(account_id)
                user_id = str(40_000_000 + index)
                access_expires = now + timedelta(seconds=rng.uniform(2 * 3600, 12 * 3600))
                refresh_expires = now + timedelta(days=rng.uniform(20, 90))
                linked = now - timedelta(days=rng.uniform(1, 400))
                used = now - timedelta(days=rng.uniform(0, 29))
                claims: dict[str, object] = {
                    "user_name": user_id,
                    "scope": list(ALL_SCOPES),
                    "allegro_api": True,
                    "iss": "https://allegro.pl",
                    "exp": int(access_expires.timestamp()),
                    "jti": str(uuid.uuid4()),
                    "client_id": "allegro-link-bench",
                }
                access = _jwt_like(claims)
                refresh = _jwt_like({**claims, "ati": claims["jti"], "jti": str(uuid.uuid4())})
                records.append(
                    (
                        account_id,
                        owner_of(index),
                        user_id,
                        f"Sprzedawca{index}",
                        "active",
                        None,
                        linked,
                        linked,
                        access_expires - timedelta(hours=12),
                        vault.seal(Account.access_token_ciphertext, account_id, access),
                        access_expires,
                        vault.seal(Account.refresh_token_ciphertext, account_id, refresh),
                        refresh_expires,
                        SCOPE,
                        rng.randint(1, 400),
                        linked,
                        now,
                        used,
                    )
                )
            await connection.copy_records_to_table("accounts", records=records, columns=COLUMNS)
        await connection.execute("VACUUM ANALYZE accounts")
    finally:
        await connection.close()
    return ids
