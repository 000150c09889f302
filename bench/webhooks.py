"""Webhook delivery: throughput and commit-to-receiver latency, one `allegro-link serve` process.

Phases (all on 127.0.0.1; the database is dropped at the end):
1. burst: BURST_EVENTS events over BURST_ACCOUNTS accounts committed in transactions of BURST_TX; the
   throughput is events / (last arrival - first commit);
2. paced: PACED_EVENTS events, one per transaction, at PACED_RATE per second; the latency of each is
   its arrival at the receiver minus the moment its commit returned (same clock, same machine).

Usage: .venv/bin/python bench/webhooks.py   (PostgreSQL at BENCH_PG_URL, default 127.0.0.1:5432)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from common import BIN, BenchDatabase, free_port, log, service_env
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from allegro_link.accounts.events import EventType, NewEvent, append_events  # noqa: E402
from allegro_link.accounts.models import Account, AccountStatus, ReloginReason  # noqa: E402
from allegro_link.db import create_sessionmaker, uuid7  # noqa: E402

BURST_EVENTS = 3000
BURST_ACCOUNTS = 300
BURST_TX = 20
PACED_EVENTS = 400
PACED_RATE = 20.0
READY_TIMEOUT = 60.0


class Arrivals:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            await request.body()
            with self.lock:
                self.at.setdefault(request.headers["webhook-id"], time.time())
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook", receive, methods=["POST"])])

    async def wait_for(self, ids: set[str], within: float) -> None:
        deadline = time.monotonic() + within
        while not ids <= set(self.at):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(ids & set(self.at))}/{len(ids)} events arrived")
            await asyncio.sleep(0.05)


def start_receiver(arrivals: Arrivals) -> tuple[str, uvicorn.Server]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(arrivals.app(), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}/hook", server


def run_cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([str(BIN / "allegro-link"), *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def account(owner: int) -> Account:
    return Account(
        id=uuid7(),
        owner_id=f"owner-{owner}",
        login=f"Sprzedawca{owner}",
        allegro_user_id=str(owner),
        status=AccountStatus.RELOGIN_REQUIRED,
        relogin_reason=ReloginReason.GRANT_REVOKED,
    )


def event(of: Account) -> NewEvent:
    return NewEvent(of, EventType.RELOGIN_REQUIRED, "bench", {"reason": "grant_revoked"})


async def burst(url: str, arrivals: Arrivals) -> dict[str, float]:
    engine = create_async_engine(url, pool_size=4)
    sessionmaker = create_sessionmaker(engine)
    accounts = [account(n) for n in range(BURST_ACCOUNTS)]
    ids: set[str] = set()
    started = time.time()
    for start in range(0, BURST_EVENTS, BURST_TX):
        async with sessionmaker() as session:
            batch = [event(accounts[n % BURST_ACCOUNTS]) for n in range(start, start + BURST_TX)]
            ids.update(map(str, await append_events(session, batch)))
            await session.commit()
    committed = time.time()
    await arrivals.wait_for(ids, 600)
    await engine.dispose()
    last = max(arrivals.at[i] for i in ids)
    return {
        "events": BURST_EVENTS,
        "commit_seconds": round(committed - started, 2),
        "delivery_seconds": round(last - started, 2),
        "events_per_second": round(BURST_EVENTS / (last - started), 1),
    }


async def paced(url: str, arrivals: Arrivals) -> dict[str, float]:
    engine = create_async_engine(url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    committed_at: dict[str, float] = {}
    for n in range(PACED_EVENTS):
        tick = time.monotonic()
        async with sessionmaker() as session:
            (event_id,) = await append_events(session, [event(account(n))])
            await session.commit()
        committed_at[str(event_id)] = time.time()
        await asyncio.sleep(max(0.0, 1 / PACED_RATE - (time.monotonic() - tick)))
    await arrivals.wait_for(set(committed_at), 120)
    await engine.dispose()
    latencies = sorted((arrivals.at[i] - t) * 1000 for i, t in committed_at.items())
    return {
        "events": PACED_EVENTS,
        "rate_per_second": PACED_RATE,
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 1),
        "max_ms": round(latencies[-1], 1),
    }


async def main() -> dict[str, Any]:
    db = BenchDatabase.create()
    arrivals = Arrivals()
    hook_url, receiver = start_receiver(arrivals)
    port = free_port()
    env = service_env(db.sqlalchemy_url, "http://127.0.0.1:9", f"http://127.0.0.1:{port}/oauth/callback")
    service: subprocess.Popen[bytes] | None = None
    try:
        run_cli(["migrate"], env)
        run_cli(["webhooks", "add", "--url", hook_url], env)
        argv = [str(BIN / "allegro-link"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        service = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the service did not become ready")
                await asyncio.sleep(0.2)
        log("burst")
        results: dict[str, Any] = {"burst": await burst(db.sqlalchemy_url, arrivals)}
        log("paced")
        results["paced"] = await paced(db.sqlalchemy_url, arrivals)
        return results
    finally:
        if service is not None:
            service.terminate()
            service.wait(timeout=30)
        receiver.should_exit = True
        db.drop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
