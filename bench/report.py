"""The Markdown block `make bench` writes into docs/performance.md: one section per phase, each target
checked against the named constant below."""

from __future__ import annotations

from pathlib import Path

from results import (
    FEW_CLIENTS,
    MANY_CLIENTS,
    ByApp,
    FreshTokens,
    Loadgen,
    Results,
    Scale,
    Storm,
    StormRun,
)
from seed import BATCH, OWNERS
from storm import ALLEGRO_DELAY_SECONDS

BEGIN_MARKER = "<!-- bench:results:begin -->"
END_MARKER = "<!-- bench:results:end -->"

# The targets, ours against the floor (bench/floor_app.py) in the same run. Token path: throughput
# ratios at both client counts, p99 at the saturated one. Ratios against the SQLAlchemy baseline are
# reported, not checked.
MIN_THROUGHPUT_RATIO = {MANY_CLIENTS: 0.80, FEW_CLIENTS: 0.70}  # ours / floor requests per second
MAX_P99_RATIO = {MANY_CLIENTS: 1.25}  # ours / floor p99 latency
LIST_MIN_THROUGHPUT_RATIO = {MANY_CLIENTS: 0.60}  # `GET /accounts`, ours / floor
LIST_MAX_P99_RATIO = {MANY_CLIENTS: 2.0}
STORM_MAX_P99_MS = 500  # with exactly one refresh per account and no error
MIN_GROWTH_RATIO = 0.80  # throughput at the largest size / at the smallest: flat within 20 %
# The keep-alive's candidate query must use its index from this many accounts on (with a busy window a
# 1,000-account table is cheaper to read whole, and the planner rightly does).
SWEEP_INDEX_FROM_ACCOUNTS = 10_000
MIB = 1024  # KiB


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(results: Results, command: str) -> str:
    """The whole block; a partial run (--storm-only, --fresh-only) has none."""
    if results.loadgen is None or results.fresh is None or results.scale is None or results.storm is None:
        raise ValueError("only a full run has a report")
    names: list[str] = [n for n in ("ours", "before", "floor", "baseline") if n in results.fresh.largest.c64]
    lines = [
        *_header(results, command, names),
        *_loadgen(results.loadgen),
        *_fresh_token(results.fresh, names),
        *_storm(results.storm),
        *_scale(results, results.fresh, results.scale, names),
        *_growth(results.fresh, names),
        "",
        f"Error-level lines in the service logs over the whole run: {results.storm.service_log_errors}.",
    ]
    return "\n".join(lines) + "\n"


def _header(results: Results, command: str, names: list[str]) -> list[str]:
    m, options = results.machine, results.options
    return [
        f"Run on {results.date} with `{command}` ({results.wall_seconds / 60:.1f} min).",
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
    ]


def _loadgen(loadgen: Loadgen) -> list[str]:
    return [
        "### Load generator",
        "",
        f"wrk (2 threads, {MANY_CLIENTS} connections, the same Lua request list) against a static uvloop "
        "endpoint: "
        f"**{loadgen.static_rps:,.0f} req/s**, p99 {loadgen.static_p99_ms:.2f} ms; wrk spends "
        f"{loadgen.wrk_cpu_us_per_request:.0f} µs of CPU per request.",
        "",
    ]


def _fresh_token(fresh: FreshTokens, names: list[str]) -> list[str]:
    largest = fresh.largest
    lines = [
        f"### 1. Fresh token, {fresh.sizes[-1]:,} accounts",
        "",
        "| clients | app | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    checks: list[tuple[int, ByApp]] = [(MANY_CLIENTS, largest.c64)]
    if largest.c4 is not None:
        checks.append((FEW_CLIENTS, largest.c4))
    for clients, by_app in checks:
        for name in names:
            s = by_app[name]
            lines.append(_row(clients, name, f"{s.rps:,.0f}", f"{s.p50_ms:.2f}", f"{s.p99_ms:.2f}", s.errors))
    return lines + _ratios(checks, MIN_THROUGHPUT_RATIO, MAX_P99_RATIO, reference="baseline")


def _ratio_cell(value: float, target: float | None, *, at_least: bool) -> str:
    if target is None:
        return f"{value:.2f} (reported)"
    return f"{value:.2f} ({_verdict(value >= target if at_least else value <= target)})"


def _ratios(
    checks: list[tuple[int, ByApp]],
    min_throughput: dict[int, float],
    max_p99: dict[int, float],
    *,
    reference: str | None,
) -> list[str]:
    """Ours against the floor, each ratio checked where it has a target; and against `reference`."""
    targets = " ".join(f"{c} clients >= {t:.2f};" for c, t in min_throughput.items())
    p99_targets = " ".join(f"{c} clients <= {t:.2f};" for c, t in max_p99.items())
    header = f"| clients | throughput ours/floor (target: {targets.rstrip(';')}) "
    header += f"| p99 ours/floor (target: {p99_targets.rstrip(';')}) |"
    rule = "|---|---|---|"
    if reference is not None:
        header += f" throughput ours/{reference} | p99 ours/{reference} |"
        rule += "---:|---:|"
    lines = ["", header, rule]
    for clients, by_app in checks:
        ours, floor = by_app["ours"], by_app["floor"]
        cells = [
            _ratio_cell(ours.rps / floor.rps, min_throughput.get(clients), at_least=True),
            _ratio_cell(ours.p99_ms / floor.p99_ms, max_p99.get(clients), at_least=False),
        ]
        if reference is not None:
            cells += [
                f"{ours.rps / by_app[reference].rps:.2f}",
                f"{ours.p99_ms / by_app[reference].p99_ms:.2f}",
            ]
        lines.append(_row(clients, *cells))
    return lines


def _storm_rows(runs: list[StormRun], label: str) -> list[str]:
    return [
        _row(
            f"{label} {n}",
            run.outcome.refreshes_at_fake,
            f"{run.outcome.p50_ms:.0f}",
            f"{run.outcome.p99_ms:.0f}",
            f"{run.outcome.max_ms:.0f}",
            run.outcome.errors,
            run.outcome.distinct_tokens_per_account_max,
            " / ".join(f"{v:.2f}" for v in [*run.cpu_seconds.values(), run.outcome.client_cpu_seconds]),
        )
        for n, run in enumerate(runs, 1)
    ]


def _storm(storm: Storm) -> list[str]:
    cpu_names = " / ".join([*storm.runs[0].cpu_seconds, "load generator"]) if storm.runs else ""
    storm_ok = all(
        run.outcome.refreshes_at_fake == storm.accounts
        and run.outcome.p99_ms < STORM_MAX_P99_MS
        and run.outcome.errors == 0
        for run in storm.runs
    )
    return [
        "",
        f"### 2. Refresh storm: {storm.requests} concurrent requests for {storm.accounts} expired "
        "accounts over 2 processes, fake Allegro delaying each refresh by "
        f"{ALLEGRO_DELAY_SECONDS * 1000:.0f} ms",
        "",
        f"| run | refreshes at Allegro (must be {storm.accounts}) | p50 ms | p99 ms "
        f"(target < {STORM_MAX_P99_MS}) | max ms | errors | tokens per account | CPU s ({cpu_names}) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *_storm_rows(storm.runs, "ours"),
        *_storm_rows(storm.before_runs or [], "before"),
        "",
        f"Storm targets for ours (exactly one refresh per account, p99 < {STORM_MAX_P99_MS} ms, no errors): "
        f"{_verdict(storm_ok)}.",
    ]


def _scale(results: Results, fresh: FreshTokens, scale: Scale, names: list[str]) -> list[str]:
    listing = scale.listing
    owners = min(OWNERS, listing.accounts)
    lines = [
        "",
        f"### 3. Scale: `GET /accounts` at {listing.accounts:,} accounts across {owners:,} owners; the "
        f"keep-alive's query at {_sizes(fresh)} accounts",
        "",
        f"`GET /accounts` first page ({listing.items_per_page} items) as each owner in turn, next to the "
        "floor's page (the same rows and counts, plain asyncpg), measured when the growth (section 4) "
        f"reached {listing.accounts:,} accounts ({listing.accounts // owners:,} per owner)"
        + (
            f"; it goes on to {fresh.sizes[-1]:,} for the token path and the keep-alive's query."
            if fresh.sizes[-1] > listing.accounts
            else "."
        ),
        "",
        "| clients | app | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    checks: list[tuple[int, ByApp]] = [(FEW_CLIENTS, listing.c4), (MANY_CLIENTS, listing.c64)]
    for clients, by_app in checks:
        for name, s in by_app.items():
            lines.append(_row(clients, name, f"{s.rps:,.0f}", f"{s.p50_ms:.2f}", f"{s.p99_ms:.2f}", s.errors))
    lines += _ratios(checks, LIST_MIN_THROUGHPUT_RATIO, LIST_MAX_P99_RATIO, reference=None)
    lines += ["", *_sweep(fresh), ""]
    return lines + _memory(results, fresh, scale, names)


def _sizes(fresh: FreshTokens) -> str:
    """`1,000` or `1,000 to 1,000,000`."""
    first, last = fresh.sizes[0], fresh.sizes[-1]
    return f"{first:,}" if first == last else f"{first:,} to {last:,}"


def _sweep(fresh: FreshTokens) -> list[str]:
    """The keep-alive candidate query and its plans at each growth step."""
    lines = [
        "Keep-alive candidate query, captured from `sweep_once` as sent, `EXPLAIN (ANALYZE, BUFFERS)` "
        "at each growth step (after its `VACUUM ANALYZE`):",
        "",
        "```sql",
        fresh.sweep_query.strip(),
        "```",
        "",
        "| accounts | window | due accounts | plan | buffers | execution ms |",
        "|---:|---|---:|---|---:|---:|",
    ]
    plans = [(size, plan) for size, figures in fresh.by_size.items() for plan in figures.sweep_plans]
    for size, plan in plans:
        lines.append(
            _row(
                f"{size:,}",
                f"{plan.window_days:g} days",
                f"{plan.due_accounts:,}",
                " → ".join(plan.nodes),
                f"{plan.buffers:,}",
                f"{plan.execution_ms:.2f}",
            )
        )
    checked = [plan for size, plan in plans if size >= SWEEP_INDEX_FROM_ACCOUNTS]
    plans_ok = bool(checked) and all(p.uses_index and not p.seq_scan for p in checked)
    verdict = (
        f"Index, no sequential scan, from {SWEEP_INDEX_FROM_ACCOUNTS:,} accounts on: {_verdict(plans_ok)}."
    )
    if any(p.seq_scan for size, p in plans if size < SWEEP_INDEX_FROM_ACCOUNTS):
        verdict += " Below that the planner may read the small table whole and sort it, which is cheaper."
    return [*lines, "", verdict]


def _memory(results: Results, fresh: FreshTokens, scale: Scale, names: list[str]) -> list[str]:
    idle = results.idle_rss_kb
    lines = [
        "Worker memory (RSS of the one serving process):",
        "",
        "| when | " + " | ".join(f"{n} MiB" for n in names) + " |",
        "|---|" + "---:|" * len(names),
        _row("idle, after start", *(f"{idle[n] / MIB:.0f}" for n in names)),
    ]
    for size, figures in fresh.by_size.items():
        lines.append(
            _row(
                f"peak under {MANY_CLIENTS}-client token load, {size:,} accounts",
                *(f"{figures.peak_rss_kb.get(n, 0) / MIB:.0f}" for n in names),
            )
        )
    blanks = [""] * (len(names) - 1)
    lines.append(_row("peak under `GET /accounts` load", f"{scale.listing.peak_rss_kb / MIB:.0f}", *blanks))
    lines.append(
        _row("high-water mark (VmHWM) after the growth", f"{scale.rss_high_water_kb / MIB:.0f}", *blanks)
    )
    return lines


def _growth(fresh: FreshTokens, names: list[str]) -> list[str]:
    lines = [
        "",
        f"### 4. Growth: fresh token at each size ({MANY_CLIENTS} clients)",
        "",
        "| accounts | "
        + " | ".join(f"{n} req/s | {n} p50 ms | {n} p99 ms" for n in names)
        + " | ours/floor |",
        "|---:|" + "---:|---:|---:|" * len(names) + "---:|",
    ]
    for size, figures in fresh.by_size.items():
        entry = figures.c64
        cells: list[str] = []
        for n in names:
            cells += [f"{entry[n].rps:,.0f}", f"{entry[n].p50_ms:.2f}", f"{entry[n].p99_ms:.2f}"]
        lines.append(_row(f"{size:,}", *cells, f"{entry['ours'].rps / entry['floor'].rps:.2f}"))
    smallest, largest = fresh.sizes[0], fresh.sizes[-1]
    first, last = fresh.by_size[smallest].c64, fresh.by_size[largest].c64
    own = last["ours"].rps / first["ours"].rps
    base = last["floor"].rps / first["floor"].rps
    relative = (last["ours"].rps / last["floor"].rps) / (first["ours"].rps / first["floor"].rps)
    flat = f"flat within {100 - MIN_GROWTH_RATIO * 100:.0f} %"
    lines += [
        "",
        f"From {smallest:,} to {largest:,} accounts: ours {own:.2f}× the throughput "
        f"({flat}: {_verdict(own >= MIN_GROWTH_RATIO)}), the floor's own primary-key read {base:.2f}×; "
        f"ours relative to the floor {relative:.2f}× ({flat}: {_verdict(relative >= MIN_GROWTH_RATIO)}).",
    ]
    return lines + _seeding(fresh)


def _seeding(fresh: FreshTokens) -> list[str]:
    """How long each growth step's seeding took: the bound on the bench's set-up."""
    workers = max(f.seeding.workers for f in fresh.by_size.values())
    lines = [
        "",
        "Seeding: each step adds the accounts since the previous size with `COPY` (batches of "
        f"{BATCH:,} rows, up to {workers} processes at once, every token sealed for its own row), then "
        "`VACUUM ANALYZE`:",
        "",
        "| accounts | added | COPY s | rows/s | VACUUM ANALYZE s | total s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for size, figures in fresh.by_size.items():
        seeding = figures.seeding
        lines.append(
            _row(
                f"{size:,}",
                f"{seeding.added:,}",
                f"{seeding.copy_seconds:.1f}",
                f"{seeding.added / max(seeding.copy_seconds, 1e-9):,.0f}",
                f"{seeding.vacuum_seconds:.1f}",
                f"{seeding.seconds:.1f}",
            )
        )
    total = sum(f.seeding.seconds for f in fresh.by_size.values())
    return [
        *lines,
        "",
        f"Seeding {fresh.sizes[-1]:,} accounts took {total:.0f} s in all ({total / 60:.1f} min).",
    ]


def render_growth(fresh: FreshTokens) -> str:
    """The growth section and the keep-alive query's plans alone (--growth-only)."""
    names: list[str] = [n for n in ("ours", "before", "floor", "baseline") if n in fresh.largest.c64]
    sweep = ["", *_sweep(fresh)] if fresh.sweep_query else []
    return "\n".join([*_growth(fresh, names), *sweep]) + "\n"


def write_report(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN_MARKER}\n{END_MARKER}\n"
    if BEGIN_MARKER not in text:
        text += f"\n{BEGIN_MARKER}\n{END_MARKER}\n"
    head, _, rest = text.partition(BEGIN_MARKER)
    _, _, tail = rest.partition(END_MARKER)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{BEGIN_MARKER}\n{block}{END_MARKER}{tail}")
