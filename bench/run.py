"""`make bench`: the token path's throughput, latency and scaling, next to a baseline, in one run.

What it does, in order (all on 127.0.0.1, every process and the database removed at the end):

0. load generator check: wrk alone against a static uvloop endpoint;
1. growth + fresh tokens: seeds 1k, then 10k, then 100k accounts (1,000 owners, tokens sealed with
   the TokenVault) and at each size runs `GET /accounts/{id}/token` against `allegro-link serve`
   (production settings) and against bench/baseline_app.py, 64 keep-alive connections, interleaved
   repetitions after a warm-up; at the largest size also with 4 connections;
2. scale: `GET /accounts` first page per owner (p99), the keep-alive candidate query's plan, RSS;
3. refresh storm: 50 accounts linked through the fake Allegro, access tokens expired, 500 requests at
   once over two `allegro-link serve` processes while the fake answers refreshes in 50 ms.

Results go to stdout (JSON) and into docs/performance.md between the `bench:results` markers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from common import (
    BIN,
    CLIENT_ID,
    CLIENT_SECRET,
    ROOT,
    BenchDatabase,
    Proc,
    Processes,
    Series,
    baseline_argv,
    ensure_wrk,
    free_port,
    log,
    machine_description,
    owner_jwt,
    run_wrk,
    serve_argv,
    service_env,
    temp_workdir,
)
from scale import capture_sweep_query, explain_sweep
from seed import OWNERS, seed_accounts
from storm import link_accounts, storm

BEGIN_MARKER = "<!-- bench:results:begin -->"
END_MARKER = "<!-- bench:results:end -->"


class RssWatcher:
    """Samples a process's resident memory every 100 ms while a measurement runs."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_kb = max(self.peak_kb, self.proc.status_kb("VmRSS"))

    def __enter__(self) -> RssWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_requests(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def measure(
    apps: dict[str, Proc],
    requests_file: Path,
    *,
    connections: int,
    seconds: float,
    reps: int,
    warmup: float,
    rss: dict[str, int] | None = None,
) -> dict[str, Series]:
    """Warm each app up, then interleave repetitions (A, B, A, B, ...) so drifts hit both alike."""
    for proc in apps.values():
        run_wrk(proc.url, requests_file, connections=connections, seconds=warmup)
    runs: dict[str, list[Any]] = {name: [] for name in apps}
    for rep in range(reps):
        for name, proc in apps.items():
            with RssWatcher(proc) as watcher:
                result = run_wrk(proc.url, requests_file, connections=connections, seconds=seconds)
            if rss is not None:
                rss[name] = max(rss.get(name, 0), watcher.peak_kb)
            runs[name].append(result)
            log(
                f"  {name:8s} c={connections:<3d} rep {rep + 1}/{reps} (load {os.getloadavg()[0]:.1f}): "
                f"{result.rps:8.1f} req/s, "
                f"p50 {result.p50_ms:6.2f} ms, p99 {result.p99_ms:6.2f} ms, errors {result.errors}"
            )
    return {name: Series(r) for name, r in runs.items()}


def run_cli(args: list[str], env: dict[str, str]) -> str:
    completed = subprocess.run(
        [str(BIN / "allegro-link"), *args], env=env, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"allegro-link {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed.stdout.strip().splitlines()[-1]


def measure_loadgen(
    procs: Processes, env: dict[str, str], api_key: str, workdir: Path, port: int, options: argparse.Namespace
) -> dict[str, float]:
    """wrk alone, against a static endpoint, with the same request list and connection count."""
    static = procs.start("static", [sys.executable, "static_server.py", str(port)], env=env, port=port)
    static_file = write_requests(
        workdir / "static.txt", [f"/accounts/{i}/token\t{api_key}" for i in range(1000)]
    )
    run_wrk(static.url, static_file, connections=64, seconds=options.warmup)
    runs = [
        run_wrk(static.url, static_file, connections=64, seconds=options.duration)
        for _ in range(options.reps)
    ]
    procs.stop(static)
    series = Series(runs)
    log(f"wrk alone against a static endpoint: {series.rps:.0f} req/s")
    return {
        "static_rps": series.rps,
        "static_p99_ms": series.p99_ms,
        "wrk_cpu_us_per_request": 1e6 * sum(r.wrk_cpu_seconds for r in runs) / sum(r.requests for r in runs),
    }


def bench(options: argparse.Namespace, procs: Processes, db: BenchDatabase, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine_description(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
    }
    seconds, reps, warmup = options.duration, options.reps, options.warmup

    fake_port, ours_port, second_port, base_port, static_port = (free_port() for _ in range(5))
    fake_url = f"http://127.0.0.1:{fake_port}"
    redirect_uri = f"http://127.0.0.1:{ours_port}/oauth/callback"
    env = service_env(db.sqlalchemy_url, fake_url, redirect_uri)

    log(f"database {db.name}: migrating")
    run_cli(["migrate"], env)
    api_key = run_cli(
        ["api-keys", "create", "--name", "bench", "--scope", "tokens:read", "--scope", "accounts:read"], env
    )

    if not options.storm_only:
        results["loadgen"] = measure_loadgen(procs, env, api_key, workdir, static_port, options)

    fake_env = {
        **env,
        "ALLEGRO_LINK_FAKE_CLIENT_ID": CLIENT_ID,
        "ALLEGRO_LINK_FAKE_CLIENT_SECRET": CLIENT_SECRET,
        "ALLEGRO_LINK_FAKE_REDIRECT_URIS": redirect_uri,
    }
    fake = procs.start(
        "fake-allegro",
        [str(BIN / "allegro-link"), "fake-allegro", "--controls", "--port", str(fake_port)],
        env=fake_env,
        port=fake_port,
        ready_path="/__fake__/stats",
    )
    ours = procs.start(
        "ours", serve_argv(ours_port, options.ours_src), env=env, port=ours_port, ready_path="/readyz"
    )
    baseline = procs.start("baseline", baseline_argv(base_port), env=env, port=base_port)
    apps = {"ours": ours, "baseline": baseline}
    if options.before_src is not None:
        before_port = free_port()
        apps["before"] = procs.start(
            "before",
            serve_argv(before_port, options.before_src),
            env=env,
            port=before_port,
            ready_path="/readyz",
        )
    results["idle_rss_kb"] = {name: p.status_kb("VmRSS") for name, p in apps.items()}

    ids: list[str] = []
    if options.storm_only:
        ids = [
            str(i) for i in asyncio.run(seed_accounts(db.dsn, env["ALLEGRO_LINK_ENCRYPTION_KEYS"], 0, 1000))
        ]
    else:
        # 1 + 4. Fresh tokens at growing sizes.
        growth: dict[str, Any] = {}
        rss_by_size: dict[str, dict[str, int]] = {}
        for size in options.sizes:
            log(f"seeding accounts up to {size}")
            started = time.perf_counter()
            new = asyncio.run(seed_accounts(db.dsn, env["ALLEGRO_LINK_ENCRYPTION_KEYS"], len(ids), size))
            ids.extend(str(i) for i in new)
            log(f"  {len(new)} accounts in {time.perf_counter() - started:.1f} s")
            shuffled = ids[:]
            random.Random(size).shuffle(shuffled)
            token_file = write_requests(
                workdir / f"tokens-{size}.txt", [f"/accounts/{i}/token\t{api_key}" for i in shuffled]
            )
            rss: dict[str, int] = {}
            entry = {
                "c64": {
                    name: s.as_json()
                    for name, s in measure(
                        apps, token_file, connections=64, seconds=seconds, reps=reps, warmup=warmup, rss=rss
                    ).items()
                }
            }
            if size == options.sizes[-1]:
                entry["c4"] = {
                    name: s.as_json()
                    for name, s in measure(
                        apps, token_file, connections=4, seconds=seconds, reps=reps, warmup=warmup
                    ).items()
                }
            growth[str(size)] = entry
            rss_by_size[str(size)] = rss
        results["fresh_token"] = growth
        results["peak_rss_kb"] = rss_by_size
        if options.fresh_only:
            return results

        # 2. Scale: owner list pages, the keep-alive candidate query, memory.
        log("GET /accounts per owner")
        owners = [f"owner-{n:04d}" for n in range(min(OWNERS, options.sizes[-1]))]
        list_file = write_requests(
            workdir / "owners.txt", [f"/accounts?limit=50\t{owner_jwt(o)}" for o in owners]
        )
        list_rss: dict[str, int] = {}
        listing = {
            f"c{c}": measure(
                {"ours": ours},
                list_file,
                connections=c,
                seconds=seconds,
                reps=reps,
                warmup=warmup,
                rss=list_rss,
            )["ours"].as_json()
            for c in (4, 64)
        }
        with httpx.Client(base_url=ours.url) as http:
            page = http.get("/accounts?limit=50", headers={"Authorization": f"Bearer {owner_jwt(owners[0])}"})
            page.raise_for_status()
            listing["items_per_page"] = len(page.json()["items"])
        results["owner_list"] = listing
        results["owner_list_peak_rss_kb"] = list_rss.get("ours", 0)

        statement, parameters = asyncio.run(capture_sweep_query(db.sqlalchemy_url))
        results["sweep_query"] = statement
        results["sweep_plans"] = [
            asyncio.run(explain_sweep(db.dsn, statement, parameters, window_days=days))
            for days in (14, options.busy_window_days)
        ]
        results["worker_rss_after_load_kb"] = ours.status_kb("VmRSS")
        results["worker_rss_high_water_kb"] = ours.status_kb("VmHWM")

    # 3. Refresh storm over two processes. Only the pair under test runs: an idle process keeps its
    # pool's connections open, and four of them would pass PostgreSQL's max_connections (100).
    log("refresh storm")
    procs.stop(baseline)
    if "before" in apps:
        procs.stop(apps["before"])
    second = procs.start(
        "ours-2", serve_argv(second_port, options.ours_src), env=env, port=second_port, ready_path="/readyz"
    )
    storm_ids = asyncio.run(link_accounts(ours.url, fake_url, "storm-owner", options.storm_accounts))
    warm_file = write_requests(workdir / "warm.txt", [f"/accounts/{i}/token\t{api_key}" for i in ids[:1000]])

    def storms(pair: tuple[Proc, Proc], label: str) -> list[dict[str, Any]]:
        # Warm both processes (API key cache, connection pool) on accounts outside the storm.
        for proc in pair:
            run_wrk(proc.url, warm_file, connections=40, seconds=2)
        runs = []
        for rep in range(options.storm_reps):
            watched = (*pair, fake)
            cpu_before = {p.name: p.cpu_seconds() for p in watched}
            outcome = asyncio.run(
                storm(
                    [p.url for p in pair],
                    fake_url,
                    db.dsn,
                    storm_ids,
                    api_key,
                    requests=options.storm_requests,
                    allegro_delay_seconds=0.05,
                )
            )
            cpu = {p.name: round(p.cpu_seconds() - cpu_before[p.name], 2) for p in watched}
            log(
                f"  {label} storm {rep + 1}/{options.storm_reps}: {outcome.refreshes_at_fake} refreshes, "
                f"p50 {outcome.p50_ms:.1f} ms, p99 {outcome.p99_ms:.1f} ms, errors {outcome.errors}; "
                f"CPU seconds {cpu}"
            )
            runs.append({**asdict(outcome), "cpu_seconds": cpu})
        return runs

    results["storm"] = {
        "accounts": options.storm_accounts,
        "requests": options.storm_requests,
        "runs": storms((ours, second), "ours"),
    }
    service_log_errors = _count_errors(ours.log_path) + _count_errors(second.log_path)
    if "before" in apps:
        procs.stop(second)
        before_pair = []
        for name in ("before", "before-2"):
            port = free_port()
            before_pair.append(
                procs.start(
                    name, serve_argv(port, options.before_src), env=env, port=port, ready_path="/readyz"
                )
            )
        results["storm"]["before_runs"] = storms((before_pair[0], before_pair[1]), "before")
    results["service_log_errors"] = service_log_errors
    return results


_ERROR_LINE = re.compile(r'"level":\s*"(?:error|critical)"')


def _count_errors(path: Path) -> int:
    count = 0
    with path.open() as lines:
        for line in lines:
            if _ERROR_LINE.search(line) or "Traceback" in line:
                count += 1
    return count


# -- report ------------------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _storm_rows(runs: list[dict[str, Any]], label: str) -> list[str]:
    return [
        _row(
            f"{label} {n}",
            s["refreshes_at_fake"],
            f"{s['p50_ms']:.0f}",
            f"{s['p99_ms']:.0f}",
            f"{s['max_ms']:.0f}",
            s["errors"],
            s["distinct_tokens_per_account_max"],
            " / ".join(f"{v:.2f}" for v in [*s["cpu_seconds"].values(), s["client_cpu_seconds"]]),
        )
        for n, s in enumerate(runs, 1)
    ]


def render(results: dict[str, Any], command: str) -> str:
    m, options = results["machine"], results["options"]
    sizes = list(results["fresh_token"])
    largest = results["fresh_token"][sizes[-1]]
    names = [n for n in ("ours", "before", "baseline") if n in largest["c64"]]
    loadgen = results["loadgen"]
    lines = [
        f"Run on {results['date']} with `{command}` ({results['wall_seconds'] / 60:.1f} min).",
        "",
        f"Machine: `nproc` = {m['nproc']}, CPU {m['cpu']}, {m['memory']} RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, PostgreSQL on 127.0.0.1:5432; load average at start "
        f"{m['load_average_at_start']} (a shared VM: other work ran alongside).",
        f"Each figure is the median of {options['reps']} interleaved runs of {options['duration']:g} s "
        f"after a {options['warmup']:g} s warm-up per app. `ours` is `allegro-link serve` (one process, "
        "production settings); `baseline` is bench/baseline_app.py"
        + ("; `before` is the service as it was before this change" if "before" in names else "")
        + ".",
        "",
        "### Load generator",
        "",
        "wrk (2 threads, 64 connections, the same Lua request list) against a static uvloop endpoint: "
        f"**{loadgen['static_rps']:,.0f} req/s**, p99 {loadgen['static_p99_ms']:.2f} ms; wrk spends "
        f"{loadgen['wrk_cpu_us_per_request']:.0f} µs of CPU per request.",
        "",
        f"### 1. Fresh token, {int(sizes[-1]):,} accounts",
        "",
        "| clients | app | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    checks = []
    for conc in ("c64", "c4"):
        for name in names:
            s = largest[conc][name]
            lines.append(
                _row(
                    conc[1:],
                    name,
                    f"{s['rps']:,.0f}",
                    f"{s['p50_ms']:.2f}",
                    f"{s['p99_ms']:.2f}",
                    s["errors"],
                )
            )
        ours, base = largest[conc]["ours"], largest[conc]["baseline"]
        checks.append((conc[1:], ours["rps"] / base["rps"], ours["p99_ms"] / base["p99_ms"]))
    lines += [
        "",
        "| clients | throughput ours/baseline (target >= 0.80) | p99 ours/baseline (target <= 1.25) |",
        "|---|---|---|",
    ]
    for conc, rps_ratio, p99_ratio in checks:
        # The issue sets the targets at 64 clients; at 4 (the machine not saturated) it asks for both
        # figures to be reported.
        targeted = conc == "64"
        lines.append(
            _row(
                conc,
                f"{rps_ratio:.2f} ({_verdict(rps_ratio >= 0.8) if targeted else 'reported'})",
                f"{p99_ratio:.2f} ({_verdict(p99_ratio <= 1.25) if targeted else 'reported'})",
            )
        )

    storm = results["storm"]
    cpu_names = " / ".join([*storm["runs"][0]["cpu_seconds"], "load generator"]) if storm["runs"] else ""
    lines += [
        "",
        f"### 2. Refresh storm: {storm['requests']} concurrent requests for {storm['accounts']} expired "
        "accounts over 2 processes, fake Allegro delaying each refresh by 50 ms",
        "",
        "| run | refreshes at Allegro (must be 50) | p50 ms | p99 ms (target < 500) | max ms | errors "
        f"| tokens per account | CPU s ({cpu_names}) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *_storm_rows(storm["runs"], "ours"),
        *_storm_rows(storm.get("before_runs", []), "before"),
    ]
    storm_ok = all(
        s["refreshes_at_fake"] == storm["accounts"] and s["p99_ms"] < 500 and s["errors"] == 0
        for s in storm["runs"]
    )
    lines += [
        "",
        f"Storm targets for ours (exactly one refresh per account, p99 < 500 ms, no errors): "
        f"{_verdict(storm_ok)}.",
    ]

    listing = results["owner_list"]
    lines += [
        "",
        f"### 3. Scale: {int(sizes[-1]):,} accounts across {min(OWNERS, int(sizes[-1])):,} owners",
        "",
        f"`GET /accounts` first page ({listing['items_per_page']} items) as each owner in turn:",
        "",
        "| clients | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for conc in ("c4", "c64"):
        s = listing[conc]
        lines.append(
            _row(conc[1:], f"{s['rps']:,.0f}", f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", s["errors"])
        )
    lines += [
        "",
        "Keep-alive candidate query, captured from `sweep_once` as sent:",
        "",
        "```sql",
        results["sweep_query"].strip(),
        "```",
        "",
        "| window | due accounts | plan | execution ms |",
        "|---|---:|---|---:|",
    ]
    for plan in results["sweep_plans"]:
        lines.append(
            _row(
                f"{plan['window_days']:g} days",
                f"{plan['due_accounts']:,}",
                " → ".join(plan["nodes"]),
                f"{plan['execution_ms']:.2f}",
            )
        )
    plans_ok = all(p["uses_index"] and not p["seq_scan"] for p in results["sweep_plans"])
    lines += ["", f"Index, no sequential scan: {_verdict(plans_ok)}.", ""]
    mib = 1024
    idle = results["idle_rss_kb"]
    lines += [
        "Worker memory (RSS of the one serving process):",
        "",
        "| when | " + " | ".join(f"{n} MiB" for n in names) + " |",
        "|---|" + "---:|" * len(names),
        _row("idle, after start", *(f"{idle[n] / mib:.0f}" for n in names)),
    ]
    for size, rss in results["peak_rss_kb"].items():
        lines.append(
            _row(
                f"peak under 64-client token load, {int(size):,} accounts",
                *(f"{rss.get(n, 0) / mib:.0f}" for n in names),
            )
        )
    blanks = [""] * (len(names) - 1)
    lines.append(
        _row("peak under `GET /accounts` load", f"{results['owner_list_peak_rss_kb'] / mib:.0f}", *blanks)
    )
    lines.append(
        _row(
            "high-water mark (VmHWM) after the scale runs",
            f"{results['worker_rss_high_water_kb'] / mib:.0f}",
            *blanks,
        )
    )

    lines += [
        "",
        "### 4. Growth: fresh token at each size (64 clients)",
        "",
        "| accounts | "
        + " | ".join(f"{n} req/s | {n} p50 ms | {n} p99 ms" for n in names)
        + " | ours/baseline |",
        "|---:|" + "---:|---:|---:|" * len(names) + "---:|",
    ]
    for size in sizes:
        entry = results["fresh_token"][size]["c64"]
        cells = []
        for n in names:
            cells += [f"{entry[n]['rps']:,.0f}", f"{entry[n]['p50_ms']:.2f}", f"{entry[n]['p99_ms']:.2f}"]
        lines.append(_row(f"{int(size):,}", *cells, f"{entry['ours']['rps'] / entry['baseline']['rps']:.2f}"))
    first, last = results["fresh_token"][sizes[0]]["c64"], results["fresh_token"][sizes[-1]]["c64"]
    own = last["ours"]["rps"] / first["ours"]["rps"]
    base = last["baseline"]["rps"] / first["baseline"]["rps"]
    relative = (last["ours"]["rps"] / last["baseline"]["rps"]) / (
        first["ours"]["rps"] / first["baseline"]["rps"]
    )
    lines += [
        "",
        f"From {int(sizes[0]):,} to {int(sizes[-1]):,} accounts: ours {own:.2f}× the throughput "
        f"(flat within 20 %: {_verdict(own >= 0.8)}), the baseline's own primary-key read {base:.2f}×; "
        f"ours relative to the baseline {relative:.2f}× (flat within 20 %: {_verdict(relative >= 0.8)}).",
        "",
        f"Error-level lines in the service logs over the whole run: {results['service_log_errors']}.",
    ]
    return "\n".join(lines) + "\n"


def write_report(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN_MARKER}\n{END_MARKER}\n"
    if BEGIN_MARKER not in text:
        text += f"\n{BEGIN_MARKER}\n{END_MARKER}\n"
    head, _, rest = text.partition(BEGIN_MARKER)
    _, _, tail = rest.partition(END_MARKER)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{BEGIN_MARKER}\n{block}{END_MARKER}{tail}")


# -- main --------------------------------------------------------------------------------------------


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--reps", type=int, default=3, help="measured runs per figure (median quoted)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up, not counted")
    parser.add_argument(
        "--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[1000, 10_000, 100_000]
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
        "--before-src", type=Path, help="also measure the fresh-token path of the service from this src/ tree"
    )
    parser.add_argument("--ours-src", type=Path, help="run the service from this src/ tree instead")
    options = parser.parse_args()
    args = " ".join(sys.argv[1:])
    if os.environ.get("BENCH_VIA_MAKE"):
        command = f'make bench BENCH_ARGS="{args}"' if args else "make bench"
    else:
        command = f".venv/bin/python bench/run.py {args}".strip()

    signal.signal(signal.SIGTERM, _stop_on_signal)
    ensure_wrk()
    workdir = temp_workdir()
    procs = Processes(workdir)
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
    results["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["wall_seconds"] = time.monotonic() - started
    print(json.dumps(results, indent=2, default=str))
    if options.storm_only or options.fresh_only:
        return 0
    block = render(results, command.strip())
    print(block)
    if not options.no_report:
        write_report(options.report, block)
        log(f"results written to {options.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
