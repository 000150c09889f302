"""The phases of `make bench` (bench/run.py runs them in order), each one function returning its figures
as the frozen dataclasses of bench/results.py."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from allegro_link.devtools.processes import Processes, ServerProcess, cli_argv, free_port, serve_argv
from common import (
    BenchDatabase,
    Series,
    WrkResult,
    app_argv,
    cpu_seconds,
    fake_env,
    log,
    migrate_and_create_key,
    owner_jwt,
    run_wrk,
    service_env,
    static_argv,
    status_kb,
)
from results import (
    FEW_CLIENTS,
    MANY_CLIENTS,
    ByApp,
    FreshTokens,
    Loadgen,
    OwnerListing,
    Scale,
    Seeding,
    SizeFigures,
    Storm,
    StormRun,
)
from scale import CONFIGURED_WINDOW_DAYS, SweepPlan, capture_sweep_query, explain_sweep
from seed import OWNERS, seed_accounts
from storm import link_accounts, storm

LISTING_PAGE = 50
WARM_ACCOUNTS = 1000  # read by each storm process before the storm, outside it
WARM_CONNECTIONS = 40
WARM_SECONDS = 2


class RssWatcher:
    """Samples a process's resident memory every 100 ms while a measurement runs."""

    def __init__(self, process: ServerProcess) -> None:
        self.process = process
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_kb = max(self.peak_kb, status_kb(self.process, "VmRSS"))

    def __enter__(self) -> RssWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_requests(path: Path, lines: list[str]) -> Path:
    """A request list for bench/requests.lua: `path<TAB>credential` lines, padded with spaces to one
    length so that wrk finds a line by its offset instead of splitting the file (see the script)."""
    width = max(len(line) for line in lines)
    path.write_text("".join(f"{line:<{width}}\n" for line in lines))
    return path


@dataclass(frozen=True)
class Bench:
    """What every phase works with."""

    options: argparse.Namespace
    procs: Processes
    db: BenchDatabase
    workdir: Path
    env: dict[str, str]  # the service's
    api_key: str
    fake_port: int
    ours_port: int

    def token_requests(self, name: str, ids: list[str]) -> Path:
        """A wrk request list: the token of each account in `ids`, in that order."""
        return write_requests(self.workdir / name, [f"/accounts/{i}/token\t{self.api_key}" for i in ids])

    def measure(
        self,
        apps: dict[str, ServerProcess],
        requests_file: Path,
        *,
        connections: int,
        rss: dict[str, int] | None = None,
    ) -> ByApp:
        """Warm each app up, then interleave repetitions (A, B, A, B, ...) so drifts hit all alike."""
        seconds, reps = self.options.duration, self.options.reps
        for process in apps.values():
            run_wrk(process.url, requests_file, connections=connections, seconds=self.options.warmup)
        runs: dict[str, list[WrkResult]] = {name: [] for name in apps}
        for rep in range(reps):
            for name, process in apps.items():
                with RssWatcher(process) as watcher:
                    result = run_wrk(process.url, requests_file, connections=connections, seconds=seconds)
                if rss is not None:
                    rss[name] = max(rss.get(name, 0), watcher.peak_kb)
                runs[name].append(result)
                log(
                    f"  {name:8s} c={connections:<3d} rep {rep + 1}/{reps} (load {os.getloadavg()[0]:.1f}): "
                    f"{result.rps:8.1f} req/s, "
                    f"p50 {result.p50_ms:6.2f} ms, p99 {result.p99_ms:6.2f} ms, errors {result.errors}"
                )
        return {name: Series(r) for name, r in runs.items()}

    def seed(self, start: int, stop: int) -> tuple[list[str], Seeding]:
        """Accounts number `start` .. `stop - 1`: their ids, and how long seeding them took."""
        keys = self.env["ALLEGRO_LINK_ENCRYPTION_KEYS"]
        seeded = seed_accounts(self.db.dsn, keys, start, stop, workers=self.options.seed_workers)
        timing = Seeding(len(seeded.ids), seeded.copy_seconds, seeded.vacuum_seconds, seeded.workers)
        return [str(i) for i in seeded.ids], timing


@dataclass(frozen=True)
class Apps:
    """The servers the measurements run against."""

    fake: ServerProcess
    ours: ServerProcess
    floor: ServerProcess
    baseline: ServerProcess
    before: ServerProcess | None

    @property
    def measured(self) -> dict[str, ServerProcess]:
        found = {"ours": self.ours, "floor": self.floor, "baseline": self.baseline}
        if self.before is not None:
            found["before"] = self.before
        return found


# -- the phases -------------------------------------------------------------------------------------


def prepare(options: argparse.Namespace, procs: Processes, db: BenchDatabase, workdir: Path) -> Bench:
    """The service's settings, its migrated database and an API key."""
    fake_port, ours_port = free_port(), free_port()
    redirect_uri = f"http://127.0.0.1:{ours_port}/oauth/callback"
    env = service_env(db.sqlalchemy_url, f"http://127.0.0.1:{fake_port}", redirect_uri)
    log(f"database {db.name}: migrating")
    api_key = migrate_and_create_key(env, "bench", "tokens:read", "accounts:read")
    return Bench(options, procs, db, workdir, env, api_key, fake_port, ours_port)


def measure_loadgen(bench: Bench) -> Loadgen:
    """wrk alone, against a static endpoint, with the same request list and connection count."""
    port = free_port()
    static = bench.procs.start("static", static_argv(port), port=port, env=bench.env, ready_path="/healthz")
    static_file = bench.token_requests("static.txt", [str(i) for i in range(1000)])
    options = bench.options
    run_wrk(static.url, static_file, connections=MANY_CLIENTS, seconds=options.warmup)
    runs = [
        run_wrk(static.url, static_file, connections=MANY_CLIENTS, seconds=options.duration)
        for _ in range(options.reps)
    ]
    bench.procs.stop(static)
    series = Series(runs)
    log(f"wrk alone against a static endpoint: {series.rps:.0f} req/s")
    return Loadgen(
        static_rps=series.rps,
        static_p99_ms=series.p99_ms,
        wrk_cpu_us_per_request=1e6 * sum(r.wrk_cpu_seconds for r in runs) / sum(r.requests for r in runs),
    )


def start_apps(bench: Bench) -> Apps:
    """The fake Allegro, ours, the floor, the baseline and (with --before-src) the service before the
    change."""
    procs, env, options = bench.procs, bench.env, bench.options
    redirect_uri = env["ALLEGRO_LINK_REDIRECT_URI"]
    fake = procs.start(
        "fake-allegro",
        cli_argv("fake-allegro", "--controls", "--port", str(bench.fake_port)),
        port=bench.fake_port,
        env=fake_env(env, redirect_uri),
        ready_path="/__fake__/stats",
    )
    ours = procs.start(
        "ours", serve_argv(bench.ours_port, src=options.ours_src), port=bench.ours_port, env=env
    )
    floor_port, base_port = free_port(), free_port()
    floor = procs.start(
        "floor",
        app_argv("floor_app", floor_port),
        port=floor_port,
        env={**env, "BENCH_FLOOR_API_KEY": bench.api_key},
        ready_path="/healthz",
    )
    baseline = procs.start(
        "baseline", app_argv("baseline_app", base_port), port=base_port, env=env, ready_path="/healthz"
    )
    before = None
    if options.before_src is not None:
        port = free_port()
        before = procs.start("before", serve_argv(port, src=options.before_src), port=port, env=env)
    return Apps(fake, ours, floor, baseline, before)


def growth(
    bench: Bench, apps: Apps, *, plans: bool, listing: bool
) -> tuple[FreshTokens, OwnerListing | None]:
    """Phases 1 and 4, and the measurements of phase 2 that depend on the size.

    At each size (--sizes, ascending): seed the accounts added since the previous size, fresh tokens at
    MANY_CLIENTS (and FEW_CLIENTS at the largest size), and (`plans`) the keep-alive candidate query's
    plans. `listing`: `GET /accounts` per owner once, at the size chosen by `listing_size`.
    """
    sizes: list[int] = bench.options.sizes
    list_at = listing_size(sizes, bench.options.list_size) if listing else None
    ids: list[str] = []
    by_size: dict[int, SizeFigures] = {}
    statement, parameters = asyncio.run(capture_sweep_query(bench.db.sqlalchemy_url)) if plans else ("", ())
    listed: OwnerListing | None = None
    for size in sizes:
        log(f"seeding accounts up to {size:,}")
        new, seeding = bench.seed(len(ids), size)
        ids.extend(new)
        log(
            f"  {seeding.added:,} accounts in {seeding.seconds:.1f} s ({seeding.workers} processes: COPY "
            f"{seeding.copy_seconds:.1f} s, {seeding.added / max(seeding.copy_seconds, 1e-9):,.0f} rows/s; "
            f"VACUUM ANALYZE {seeding.vacuum_seconds:.1f} s)"
        )
        # The plans right after the VACUUM ANALYZE, before the token load warms any page.
        sweep = sweep_plans(bench, statement, parameters) if plans else []
        shuffled = ids[:]
        random.Random(size).shuffle(shuffled)  # noqa: S311 - the same order in every run, not security
        token_file = bench.token_requests(f"tokens-{size}.txt", shuffled)
        rss: dict[str, int] = {}
        c64 = bench.measure(apps.measured, token_file, connections=MANY_CLIENTS, rss=rss)
        c4 = bench.measure(apps.measured, token_file, connections=FEW_CLIENTS) if size == sizes[-1] else None
        by_size[size] = SizeFigures(seeding=seeding, c64=c64, c4=c4, peak_rss_kb=rss, sweep_plans=sweep)
        if size == list_at:
            listed = owner_listing(bench, {"ours": apps.ours, "floor": apps.floor}, size)
    return FreshTokens(by_size=by_size, account_ids=ids, sweep_query=statement), listed


def listing_size(sizes: list[int], limit: int) -> int:
    """The size `GET /accounts` is measured at: the largest of `sizes` up to `limit` (the smallest size
    if all are larger). At 100,000 accounts each of the 1,000 owners has 100, as in earlier runs."""
    return max((s for s in sizes if s <= limit), default=min(sizes))


def scale(apps: Apps, listing: OwnerListing) -> Scale:
    """Phase 2: the owner listing (measured during the growth, see `growth`) and the worker's memory."""
    return Scale(
        listing=listing,
        rss_after_load_kb=status_kb(apps.ours, "VmRSS"),
        rss_high_water_kb=status_kb(apps.ours, "VmHWM"),
    )


def owner_listing(bench: Bench, apps: dict[str, ServerProcess], accounts: int) -> OwnerListing:
    """`GET /accounts` first page as each owner in turn, ours and its floor, with `accounts` accounts
    in the database."""
    log(f"GET /accounts per owner, {accounts:,} accounts")
    owners = [f"owner-{n:04d}" for n in range(min(OWNERS, accounts))]
    list_file = write_requests(
        bench.workdir / "owners.txt", [f"/accounts?limit={LISTING_PAGE}\t{owner_jwt(o)}" for o in owners]
    )
    rss: dict[str, int] = {}
    c4, c64 = (bench.measure(apps, list_file, connections=c, rss=rss) for c in (FEW_CLIENTS, MANY_CLIENTS))
    with httpx.Client(base_url=apps["ours"].url) as http:
        page = http.get(
            f"/accounts?limit={LISTING_PAGE}", headers={"Authorization": f"Bearer {owner_jwt(owners[0])}"}
        )
        page.raise_for_status()
    return OwnerListing(
        accounts=accounts,
        c4=c4,
        c64=c64,
        items_per_page=len(page.json()["items"]),
        peak_rss_kb=rss.get("ours", 0),
    )


def sweep_plans(bench: Bench, statement: str, parameters: tuple[Any, ...]) -> list[SweepPlan]:
    """The keep-alive's candidate query (captured once, as sent), EXPLAIN ANALYZEd as configured and with
    a busy window, on the accounts seeded so far."""
    plans = [
        asyncio.run(explain_sweep(bench.db.dsn, statement, parameters, window_days=days))
        for days in (CONFIGURED_WINDOW_DAYS, bench.options.busy_window_days)
    ]
    for plan in plans:
        log(
            f"  keep-alive query, {plan.window_days:g}-day window: {' → '.join(plan.nodes)}, "
            f"{plan.due_accounts:,} due, {plan.execution_ms:.2f} ms, {plan.buffers:,} buffers"
        )
    return plans


def refresh_storm(bench: Bench, apps: Apps, ids: list[str]) -> Storm:
    """Phase 3: the refresh storm over two processes (and over two `before` ones, if measured).

    Only the pair under test runs: an idle process keeps its pool's connections open, and four or
    five of them would pass PostgreSQL's max_connections (100).
    """
    log("refresh storm")
    procs, options = bench.procs, bench.options
    procs.stop(apps.baseline)
    procs.stop(apps.floor)
    if apps.before is not None:
        procs.stop(apps.before)
    second = _serve(bench, "ours-2", options.ours_src)
    storm_ids = asyncio.run(
        link_accounts(apps.ours.url, apps.fake.url, "storm-owner", options.storm_accounts)
    )
    warm_file = bench.token_requests("warm.txt", ids[:WARM_ACCOUNTS])
    runs = _storm_runs(bench, (apps.ours, second), apps.fake, storm_ids, warm_file, "ours")
    service_log_errors = _count_errors(apps.ours.log_path) + _count_errors(second.log_path)
    before_runs = None
    if apps.before is not None:
        procs.stop(second)
        pair = (_serve(bench, "before", options.before_src), _serve(bench, "before-2", options.before_src))
        before_runs = _storm_runs(bench, pair, apps.fake, storm_ids, warm_file, "before")
    return Storm(
        accounts=options.storm_accounts,
        requests=options.storm_requests,
        runs=runs,
        before_runs=before_runs,
        service_log_errors=service_log_errors,
    )


def _serve(bench: Bench, name: str, src: Path | None) -> ServerProcess:
    port = free_port()
    return bench.procs.start(name, serve_argv(port, src=src), port=port, env=bench.env)


def _storm_runs(
    bench: Bench,
    pair: tuple[ServerProcess, ServerProcess],
    fake: ServerProcess,
    storm_ids: list[str],
    warm_file: Path,
    label: str,
) -> list[StormRun]:
    # Warm both processes (API key cache, connection pool) on accounts outside the storm.
    for process in pair:
        run_wrk(process.url, warm_file, connections=WARM_CONNECTIONS, seconds=WARM_SECONDS)
    options = bench.options
    runs = []
    for rep in range(options.storm_reps):
        watched = (*pair, fake)
        cpu_before = {p.name: cpu_seconds(p) for p in watched}
        outcome = asyncio.run(
            storm(
                [p.url for p in pair],
                fake.url,
                bench.db.dsn,
                storm_ids,
                bench.api_key,
                requests=options.storm_requests,
            )
        )
        cpu = {p.name: round(cpu_seconds(p) - cpu_before[p.name], 2) for p in watched}
        log(
            f"  {label} storm {rep + 1}/{options.storm_reps}: {outcome.refreshes_at_fake} refreshes, "
            f"p50 {outcome.p50_ms:.1f} ms, p99 {outcome.p99_ms:.1f} ms, errors {outcome.errors}; "
            f"CPU seconds {cpu}"
        )
        runs.append(StormRun(outcome, cpu))
    return runs


_ERROR_LINE = re.compile(r'"level":\s*"(?:error|critical)"')


def _count_errors(path: Path) -> int:
    count = 0
    with path.open() as lines:
        for line in lines:
            if _ERROR_LINE.search(line) or "Traceback" in line:
                count += 1
    return count
