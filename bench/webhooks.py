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
import shutil
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass

from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from allegro_link.accounts.events import EventType, NewEvent, append_events
from allegro_link.accounts.models import Account, AccountStatus, ReloginReason
from allegro_link.db import create_sessionmaker, uuid7
from allegro_link.devtools.processes import Processes, free_port, run_cli, serve_argv, serve_in_thread
from common import BenchDatabase, log, service_env, temp_workdir

BURST_EVENTS = 3000
BURST_ACCOUNTS = 300
BURST_TX = 20
PACED_EVENTS = 400
PACED_RATE = 20.0
BURST_WITHIN = 600.0  # seconds for every burst event to arrive: a bound for failing
PACED_WITHIN = 120.0


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


@dataclass(frozen=True)
class Burst:
    events: int
    commit_seconds: float
    delivery_seconds: float
    events_per_second: float


@dataclass(frozen=True)
class Paced:
    events: int
    rate_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float


async def burst(url: str, arrivals: Arrivals) -> Burst:
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
    await arrivals.wait_for(ids, BURST_WITHIN)
    await engine.dispose()
    last = max(arrivals.at[i] for i in ids)
    return Burst(
        events=BURST_EVENTS,
        commit_seconds=round(committed - started, 2),
        delivery_seconds=round(last - started, 2),
        events_per_second=round(BURST_EVENTS / (last - started), 1),
    )


async def paced(url: str, arrivals: Arrivals) -> Paced:
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
    await arrivals.wait_for(set(committed_at), PACED_WITHIN)
    await engine.dispose()
    latencies = sorted((arrivals.at[i] - t) * 1000 for i, t in committed_at.items())
    return Paced(
        events=PACED_EVENTS,
        rate_per_second=PACED_RATE,
        p50_ms=round(statistics.median(latencies), 1),
        p99_ms=round(latencies[int(len(latencies) * 0.99) - 1], 1),
        max_ms=round(latencies[-1], 1),
    )


async def measure(url: str, arrivals: Arrivals) -> dict[str, Burst | Paced]:
    log("burst")
    found: dict[str, Burst | Paced] = {"burst": await burst(url, arrivals)}
    log("paced")
    found["paced"] = await paced(url, arrivals)
    return found


def main() -> int:
    db = BenchDatabase.create()
    workdir = temp_workdir()
    arrivals = Arrivals()
    try:
        with serve_in_thread(arrivals.app()) as receiver, Processes(workdir) as processes:
            port = free_port()
            redirect_uri = f"http://127.0.0.1:{port}/oauth/callback"
            env = service_env(db.sqlalchemy_url, "http://127.0.0.1:9", redirect_uri)
            run_cli("migrate", env=env)
            run_cli("webhooks", "add", "--url", f"{receiver}/hook", env=env)
            processes.start("serve", serve_argv(port), port=port, env=env)
            results = asyncio.run(measure(db.sqlalchemy_url, arrivals))
    finally:
        db.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({phase: asdict(figures) for phase, figures in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
