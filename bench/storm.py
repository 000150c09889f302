"""The refresh storm: many concurrent token requests for accounts whose access tokens have expired.

Accounts are linked through the real flow against the fake Allegro (so their refresh tokens are live
there), their access tokens are then marked expired in the database, and every request is sent at
once over its own pre-opened connection. The client is plain asyncio streams on uvloop: it does
nothing but write a request and read one response per connection.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import httpx

from allegro_link.devtools.consent import consent, query_params
from common import owner_jwt

RETURN_TO = "https://panel.example.com/allegro/konta"
ALLEGRO_DELAY_SECONDS = 0.05  # the fake's answer to each refresh during the storm


async def link_accounts(service_url: str, fake_url: str, owner_id: str, count: int) -> list[str]:
    """Link `count` new Allegro accounts for one owner through authorize → consent → callback → complete."""
    headers = {"Authorization": f"Bearer {owner_jwt(owner_id)}"}
    ids: list[str] = []
    async with (
        httpx.AsyncClient(base_url=service_url, timeout=30) as service,
        httpx.AsyncClient(base_url=fake_url, timeout=30) as fake,
    ):
        for n in range(count):
            started = await service.post(
                "/accounts/authorize", json={"return_to": RETURN_TO}, headers=headers
            )
            started.raise_for_status()
            login = f"Burza{n:03d}-{uuid.uuid4().hex[:6]}"
            redirect = await consent(fake, started.json()["authorization_url"], login)
            callback = await service.get(f"/oauth/callback?{urlsplit(redirect).query}")
            if callback.status_code != 303:
                raise RuntimeError(f"callback answered {callback.status_code}: {callback.text}")
            returned = query_params(callback.headers["location"])
            completed = await service.post(
                "/oauth/complete", json={"link_session": returned["link_session"]}, headers=headers
            )
            completed.raise_for_status()
            ids.append(completed.json()["account"]["id"])
    return ids


async def expire_access_tokens(dsn: str, account_ids: list[str]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE accounts SET access_token_expires_at = now() - interval '1 second' WHERE id = ANY($1)",
            [uuid.UUID(a) for a in account_ids],
        )
    finally:
        await connection.close()


@dataclass(frozen=True)
class StormResult:
    requests: int
    errors: int
    distinct_tokens_per_account_max: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    refreshes_at_fake: int
    wall_seconds: float
    client_cpu_seconds: float  # this load generator's own CPU time during the storm


async def _one(
    host: str, port: int, path: str, credential: str, go: asyncio.Event
) -> tuple[int, bytes, float]:
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {credential}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    await go.wait()
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    elapsed = time.perf_counter() - started
    writer.close()
    status = int(head.split(b" ", 2)[1])
    return status, body, elapsed


async def storm(
    service_urls: list[str],
    fake_url: str,
    dsn: str,
    account_ids: list[str],
    api_key: str,
    *,
    requests: int,
    allegro_delay_seconds: float = ALLEGRO_DELAY_SECONDS,
) -> StormResult:
    await expire_access_tokens(dsn, account_ids)
    async with httpx.AsyncClient(base_url=fake_url, timeout=10) as fake:
        await fake.delete("/__fake__/faults")
        fault = {
            "endpoint": "token",
            "kind": "delay",
            "delay_seconds": allegro_delay_seconds,
            "count": 10_000,
        }
        (await fake.post("/__fake__/faults", json=fault)).raise_for_status()
        before = (await fake.get("/__fake__/stats")).json()["token_calls"]["refresh_token"]

        go = asyncio.Event()
        tasks = []
        for i in range(requests):
            # Every account is asked for through every process (round after round of all accounts,
            # each round on the next process), so the processes really compete for each refresh.
            account = account_ids[i % len(account_ids)]
            parts = urlsplit(service_urls[(i // len(account_ids)) % len(service_urls)])
            tasks.append(
                asyncio.create_task(
                    _one(parts.hostname or "", parts.port or 80, f"/accounts/{account}/token", api_key, go)
                )
            )
        await asyncio.sleep(0.5)  # every connection open and waiting
        wall, client_cpu = time.perf_counter(), time.process_time()
        go.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        wall, client_cpu = time.perf_counter() - wall, time.process_time() - client_cpu

        after = (await fake.get("/__fake__/stats")).json()["token_calls"]["refresh_token"]
        await fake.delete("/__fake__/faults")

    latencies: list[float] = []
    errors = 0
    tokens: dict[str, set[str]] = {}
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            errors += 1
            continue
        status, body, elapsed = result
        latencies.append(elapsed * 1000)
        if status != 200:
            errors += 1
            continue
        tokens.setdefault(account_ids[i % len(account_ids)], set()).add(json.loads(body)["access_token"])
    latencies.sort()
    return StormResult(
        requests=requests,
        errors=errors,
        distinct_tokens_per_account_max=max((len(t) for t in tokens.values()), default=0),
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p99_ms=latencies[math.ceil(len(latencies) * 0.99) - 1] if latencies else float("nan"),
        max_ms=latencies[-1] if latencies else float("nan"),
        refreshes_at_fake=after - before,
        wall_seconds=wall,
        client_cpu_seconds=client_cpu,
    )
