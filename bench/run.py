"""`make bench`: the token path's throughput, latency and scaling, next to a baseline, in one run.

What it does, in order (all on 127.0.0.1, every process and the database removed at the end):

0. load generator check: wrk alone against a static uvloop endpoint;
1. growth + fresh tokens: seeds 1k, then 10k, 100k and 1M accounts (1,000 owners, tokens sealed with
   the TokenVault, COPY by a few processes, each step adding the difference; its time is reported) and
   at each size runs `GET /accounts/{id}/token` against `allegro-link serve` (production settings),
   against bench/floor_app.py (the floor the targets are checked against) and bench/baseline_app.py (a
   second reference), 64 keep-alive connections, interleaved repetitions after a warm-up; at the
   largest size also with 4 connections;
2. scale: the keep-alive candidate query's plan at each size; `GET /accounts` first page per owner, ours
   and the floor, at 100k accounts (as the growth passes through it); RSS;
3. refresh storm: 50 accounts linked through the fake Allegro, access tokens expired, 500 requests at
   once over two `allegro-link serve` processes while the fake answers refreshes in 50 ms.

Each phase is one function in bench/phases.py returning its figures (bench/results.py); bench/report.py
renders them. Results go to stdout (JSON) and into docs/performance.md between the `bench:results`
markers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from allegro_link.devtools.processes import Processes
from common import (
    BENCH_DIR,
    ROOT,
    BenchDatabase,
    ensure_wrk,
    log,
    machine_description,
    status_kb,
    temp_workdir,
)
from phases import growth, measure_loadgen, prepare, refresh_storm, scale, start_apps
from report import render, render_growth, write_report
from results import Results
from seed import SEED_WORKERS

STORM_ONLY_ACCOUNTS = 1000  # seeded for --storm-only: the storm's warm-up reads them


def bench(options: argparse.Namespace, procs: Processes, db: BenchDatabase, workdir: Path) -> Results:
    """The phases in order; --storm-only, --fresh-only and --growth-only run a part."""
    machine = machine_description()
    setup = prepare(options, procs, db, workdir)
    partial = options.storm_only or options.fresh_only or options.growth_only
    loadgen = None if partial else measure_loadgen(setup)
    apps = start_apps(setup)
    results = Results(
        machine=machine,
        options={k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        idle_rss_kb={name: status_kb(p, "VmRSS") for name, p in apps.measured.items()},
        loadgen=loadgen,
    )
    if options.storm_only:
        ids, _ = setup.seed(0, STORM_ONLY_ACCOUNTS)
    else:
        fresh, listing = growth(setup, apps, plans=not options.fresh_only, listing=not partial)
        results = replace(results, fresh=fresh)
        if listing is None:
            return results
        results = replace(results, scale=scale(apps, listing))
        ids = fresh.account_ids
    return replace(results, storm=refresh_storm(setup, apps, ids))


# -- main --------------------------------------------------------------------------------------------


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--reps", type=int, default=3, help="measured runs per figure (median quoted)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up, not counted")
    parser.add_argument(
        "--sizes",
        type=lambda v: sorted(int(x) for x in v.split(",")),
        default=[1000, 10_000, 100_000, 1_000_000],
        help="numbers of accounts the growth steps through",
    )
    parser.add_argument(
        "--list-size",
        type=int,
        default=100_000,
        help="`GET /accounts` per owner runs at the largest size up to this",
    )
    parser.add_argument(
        "--seed-workers", type=int, default=SEED_WORKERS, help="processes seeding accounts at once"
    )
    parser.add_argument("--storm-accounts", type=int, default=50)
    parser.add_argument("--storm-requests", type=int, default=500)
    parser.add_argument("--storm-reps", type=int, default=3)
    parser.add_argument("--busy-window-days", type=float, default=40.0)
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--no-report", action="store_true", help="print results only")
    parser.add_argument("--storm-only", action="store_true", help="only the refresh storm (for profiling)")
    parser.add_argument(
        "--fresh-only", action="store_true", help="only the fresh-token figures, printed (for profiling)"
    )
    parser.add_argument(
        "--growth-only",
        action="store_true",
        help="only the growth: seeding, fresh tokens and the keep-alive query's plans at each size, printed",
    )
    parser.add_argument(
        "--before-src", type=Path, help="also measure the fresh-token path of the service from this src/ tree"
    )
    parser.add_argument("--ours-src", type=Path, help="run the service from this src/ tree instead")
    return parser


def main() -> int:
    options = _parser().parse_args()
    args = " ".join(sys.argv[1:])
    if os.environ.get("BENCH_VIA_MAKE"):
        command = f'make bench BENCH_ARGS="{args}"' if args else "make bench"
    else:
        command = f".venv/bin/python bench/run.py {args}".strip()

    signal.signal(signal.SIGTERM, _stop_on_signal)
    ensure_wrk()
    workdir = temp_workdir()
    procs = Processes(workdir, cwd=BENCH_DIR)
    db: BenchDatabase | None = None
    started = time.monotonic()
    try:
        db = BenchDatabase.create()
        results = bench(options, procs, db, workdir)
    finally:
        procs.close()
        if db is not None:
            with contextlib.suppress(Exception):
                db.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    results = replace(
        results,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        wall_seconds=time.monotonic() - started,
    )
    print(json.dumps(results.as_json(), indent=2, default=str))
    if options.growth_only and results.fresh is not None:
        print(render_growth(results.fresh))
    if options.storm_only or options.fresh_only or options.growth_only:
        return 0
    block = render(results, command.strip())
    print(block)
    if not options.no_report:
        write_report(options.report, block)
        log(f"results written to {options.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
