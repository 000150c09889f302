"""Bulk-insert realistic accounts with COPY: active, tokens sealed by the project's TokenVault.

Tokens are shaped like Allegro's (RS256 JWTs carrying every scope, about 1.4 kB each) so that rows,
TOAST and decryption cost what they cost in production. Access tokens are valid for 2-12 more hours
and refresh tokens for 20-90 more days, and accounts were last used 0-29 days ago: nothing is due for
a refresh or a keep-alive call (window 14 days, use after 30), so the fresh-token path is exercised and
the keep-alive has nothing to do.

Every row is sealed for its own id (the ciphertext is bound to the row through AES-GCM's associated
data), so nothing can be shared between rows. What a row costs (measured on 50,000 rows, one process,
2 cores): about 50 µs of CPU in Python to make and seal its two tokens and send them, about as much in
the server's backend (the heap row, a TOASTed token and the index entries, all WAL-logged), and some
waiting on the WAL. So batches of `BATCH` rows are made and copied by `SEED_WORKERS` processes at once,
each on its own connection: the Python work of one overlaps the COPY of the other and both cores are
used (1,000,000 rows: about 2 minutes at a load average of 5, 3-4 at 7-11).
The table keeps its indexes throughout, so they grow by insertion as they do in production, and
`VACUUM ANALYZE` runs at the end: the server's autovacuum may be off, and production's would have
visited a table that grew this much (visibility map, planner statistics).
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
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
BATCH = 10_000  # rows per COPY (about 35 MB of rows with their tokens), one task of a worker
# Processes making and copying batches at once. More than the cores only adds contention.
SEED_WORKERS = max(1, min(4, os.cpu_count() or 1))
SCOPE = " ".join(ALL_SCOPES)
SIGNATURE_BYTES = 256  # RS256 with a 2048-bit key

# The claims as JSON, the fixed part serialised once (json.dumps per token was a fifth of the Python
# work). The variable values are digits and UUIDs, which need no escaping.
_HEADER = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()).rstrip(b"=")
_SCOPES_JSON = json.dumps(list(ALL_SCOPES))


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _claims(user_id: str, expires: int, jti: str, ati: str | None = None) -> bytes:
    refresh = f', "ati": "{ati}"' if ati is not None else ""
    return (
        f'{{"user_name": "{user_id}", "scope": {_SCOPES_JSON}, "allegro_api": true, '
        f'"iss": "https://allegro.pl", "exp": {expires}, "jti": "{jti}", '
        f'"client_id": "allegro-link-bench"{refresh}}}'
    ).encode()


def _jwt_like(claims: bytes, signature: bytes) -> str:
    return b".".join((_HEADER, _b64(claims), _b64(signature))).decode()


def owner_of(index: int) -> str:
    return f"owner-{index % OWNERS:04d}"


@dataclass(frozen=True)
class Seeded:
    """What one `seed_accounts` call inserted, and how long it took."""

    ids: list[uuid.UUID]
    copy_seconds: float  # making, sealing and COPYing the rows (wall clock)
    vacuum_seconds: float  # the VACUUM ANALYZE afterwards
    workers: int  # processes that made and copied the batches (1: this one)

    @property
    def seconds(self) -> float:
        return self.copy_seconds + self.vacuum_seconds


def seed_accounts(
    dsn: str, encryption_keys: str, start: int, stop: int, *, workers: int = SEED_WORKERS
) -> Seeded:
    """Insert accounts number `start` .. `stop - 1` (ids returned in that order), then VACUUM ANALYZE.

    Rows depend only on their number and `now`, not on the batch or the worker that made them; the
    growth steps of `make bench` call this with the difference from the previous size.
    """
    now = datetime.now(UTC)
    batches = [(lo, min(stop, lo + BATCH)) for lo in range(start, stop, BATCH)]
    started = time.perf_counter()
    workers = max(1, min(workers, len(batches)))
    ids: list[uuid.UUID] = []
    if workers == 1:
        for lo, hi in batches:
            ids += _copy_batch(dsn, encryption_keys, now, lo, hi)
    else:
        ids = _copy_in_processes(dsn, encryption_keys, now, batches, workers)
    copied = time.perf_counter()
    asyncio.run(_vacuum_analyze(dsn))
    return Seeded(ids, copied - started, time.perf_counter() - copied, workers)


def _copy_in_processes(
    dsn: str, encryption_keys: str, now: datetime, batches: list[tuple[int, int]], workers: int
) -> list[uuid.UUID]:
    # "spawn": fresh interpreters, not forks of a process that may have threads (the harness's) running.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(_copy_batch, dsn, encryption_keys, now, lo, hi) for lo, hi in batches]
        return [account_id for future in futures for account_id in future.result()]
    finally:
        # On an error or ctrl-C, batches not started are dropped and the running ones (a second or two)
        # are waited for, so that no worker is left copying while run.py drops the database.
        pool.shutdown(wait=True, cancel_futures=True)


def _copy_batch(dsn: str, encryption_keys: str, now: datetime, start: int, stop: int) -> list[uuid.UUID]:
    """One batch, in a worker process (or inline): make the rows, COPY them on a connection of its own."""
    ids = [uuid7() for _ in range(start, stop)]
    records = list(_rows(encryption_keys, now, start, ids))

    async def copy() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.copy_records_to_table("accounts", records=records, columns=COLUMNS)
        finally:
            await connection.close()

    asyncio.run(copy())
    return ids


def _rows(
    encryption_keys: str, now: datetime, start: int, ids: list[uuid.UUID]
) -> Iterator[tuple[object, ...]]:
    """The COPY records (in COLUMNS order) of accounts number `start` .. `start + len(ids) - 1`, with
    these ids."""
    vault = TokenVault(KeyRing(parse_encryption_keys(encryption_keys)))
    rng = random.Random(start)  # noqa: S311 - the same data in every run, not security
    # The signatures' random bytes, drawn at once (the tokens are never verified, only stored).
    signatures = rng.randbytes(2 * SIGNATURE_BYTES * len(ids))
    for n, account_id in enumerate(ids):
        index = start + n
        user_id = str(40_000_000 + index)
        access_expires = now + timedelta(seconds=rng.uniform(2 * 3600, 12 * 3600))
        refresh_expires = now + timedelta(days=rng.uniform(20, 90))
        linked = now - timedelta(days=rng.uniform(1, 400))
        used = now - timedelta(days=rng.uniform(0, 29))
        jti, refresh_jti = str(uuid.uuid4()), str(uuid.uuid4())
        exp = int(access_expires.timestamp())
        at = 2 * SIGNATURE_BYTES * n
        access = _jwt_like(_claims(user_id, exp, jti), signatures[at : at + SIGNATURE_BYTES])
        refresh = _jwt_like(
            _claims(user_id, exp, refresh_jti, ati=jti),
            signatures[at + SIGNATURE_BYTES : at + 2 * SIGNATURE_BYTES],
        )
        yield (
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


async def _vacuum_analyze(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("VACUUM ANALYZE accounts")
    finally:
        await connection.close()
