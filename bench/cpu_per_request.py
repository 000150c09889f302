"""CPU per request, ours next to the floor (bench/floor_app.py), and what each of our steps costs.

wrk figures move with everything else on a shared 2-core machine; CPU seconds per request of one
process are steadier, and they are what the throughput ratio comes down to when both apps are CPU
bound. Each variant runs in a fresh interpreter that drives the ASGI app directly (no HTTP server,
so uvicorn's share, equal for every app, is left out): a warm-up pass, then the requests at
`--concurrency`, CPU time of the process divided by the requests; the lowest of `--reps` runs.

Two paths: `token` (`GET /accounts/{id}/token` with the service's API key, over every account) and
`list` (`GET /accounts?limit=50` as each owner, about 100 accounts per owner as in `make bench`).
`baseline` is bench/baseline_app.py (the same read through SQLAlchemy), a second reference.
The `ours without …` variants switch one step off by patching it out, to show what it costs.

    .venv/bin/python bench/cpu_per_request.py                 # about 2 minutes; PostgreSQL at 127.0.0.1:5432
    .venv/bin/python bench/cpu_per_request.py --path list --reps 1
    .venv/bin/python bench/cpu_per_request.py --profile ours --path token   # cProfile of one variant
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from common import BenchDatabase, migrate_and_create_key, owner_jwt, service_env, temp_workdir
from seed import owner_of, seed_accounts

# Accounts per owner in the list path's data (`make bench` at 100,000 accounts: 100).
ACCOUNTS_PER_OWNER = 100
LIST_PAGE = 50
FLOOR = "floor"

VARIANTS: dict[str, tuple[str, list[str]]] = {
    FLOOR: (FLOOR, []),
    "baseline": ("baseline", []),
    "ours": ("ours", []),
    "ours without the audit record": ("ours", ["no_audit"]),
    "ours without decrypting the token": ("ours", ["no_decrypt"]),
    "ours without the request middleware": ("ours", ["no_middleware"]),
    "ours without checking the API key": ("ours", ["no_key_check"]),
}


def _patch(patches: list[str]) -> None:
    if "no_audit" in patches:
        from allegro_link.tokens.audit import TokenAuditLog

        TokenAuditLog.record = lambda self, **kwargs: None  # type: ignore[method-assign]
    if "no_middleware" in patches:
        # Request id, access log, metrics, size guards: replaced by a pass-through.
        from allegro_link.ops.middleware import RequestContextMiddleware

        async def passthrough(self: Any, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

        RequestContextMiddleware.__call__ = passthrough  # type: ignore[method-assign]
    if "no_key_check" in patches:
        # The key's hash and constant-time comparison skipped; the cached lookup stays.
        from allegro_link.auth import api_keys

        real_verify = api_keys.ApiKeyVerifier.verify
        known: dict[str, Any] = {}

        async def verify(self: Any, presented: str) -> Any:
            if presented not in known:
                known[presented] = await real_verify(self, presented)
            return known[presented]

        api_keys.ApiKeyVerifier.verify = verify  # type: ignore[method-assign]
    if "no_decrypt" in patches:
        from allegro_link.crypto.vault import TokenVault

        TokenVault.open = lambda self, *args: "token"  # type: ignore[method-assign]


LIST_VARIANTS: dict[str, tuple[str, list[str]]] = {
    FLOOR: (FLOOR, []),
    "ours": ("ours", []),
    "ours without the request middleware": ("ours", ["no_middleware"]),
}


def _application(app_name: str, patches: list[str], work: Path) -> Any:
    if app_name == "ours":
        from allegro_link.app import create_app
        from allegro_link.logs import configure_logging
        from allegro_link.settings import Settings, load_settings

        settings = load_settings(Settings)
        configure_logging(settings.log_level, json=True, stream=(work / "service.log").open("a"))
        _patch(patches)
        return create_app(settings)
    if app_name == FLOOR:
        import floor_app

        return floor_app.create_app()
    import baseline_app

    return baseline_app.create_app()


def child(
    app_name: str, patches: list[str], work: Path, path_kind: str, options: argparse.Namespace
) -> float:
    """Runs in its own interpreter: CPU µs per request of this process."""
    import uvloop
    from asgi_lifespan import LifespanManager

    lines = [line.split("\t") for line in (work / f"{path_kind}.txt").read_text().splitlines()]
    requests: int = options.requests if path_kind == "token" else options.list_requests
    concurrency: int = options.concurrency
    application = _application(app_name, patches, work)

    async def one(app: Any, target: str, key: str) -> None:
        path, _, query = target.partition("?")
        status: list[int] = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"{path}: {status}")

    async def run() -> float:
        async with LifespanManager(application) as manager:
            app = manager.app

            async def worker(first: int) -> None:
                for i in range(first, requests, concurrency):
                    await one(app, *lines[i % len(lines)])

            await asyncio.gather(*(worker(k) for k in range(concurrency)))  # warm-up
            profiler = cProfile.Profile() if options.profile else None
            before = resource.getrusage(resource.RUSAGE_SELF)
            if profiler is not None:
                profiler.enable()
            await asyncio.gather(*(worker(k) for k in range(concurrency)))
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(work / "profile.out"))
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            return 1e6 * cpu / requests

    return uvloop.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=5000, help="token requests per run")
    parser.add_argument("--list-requests", type=int, default=1000, help="list requests per run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--path", choices=("token", "list", "both"), default="both")
    parser.add_argument("--profile", metavar="VARIANT", help="cProfile this variant once")
    parser.add_argument("--sort", default="tottime", help="with --profile: pstats sort key")
    parser.add_argument("--top", type=int, default=40, help="with --profile: lines printed")
    parser.add_argument("--child", nargs=3, metavar=("APP", "PATCHES", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        app_name, patches, path_kind = options.child
        enabled = [p for p in patches.split(",") if p]
        cost = child(app_name, enabled, options.work, path_kind, options)
        print(json.dumps({"cpu_us": cost}))
        return 0

    paths = ["token", "list"] if options.path == "both" else [options.path]
    work = temp_workdir()
    db = BenchDatabase.create()
    try:
        env = _prepare(db, work, options.accounts)
        if options.profile:
            for path_kind in paths:
                _profile(options, work, env, path_kind)
            return 0
        results = {path_kind: _measure(options, work, env, path_kind) for path_kind in paths}
    finally:
        db.drop()
        shutil.rmtree(work, ignore_errors=True)
    for path_kind, by_variant in results.items():
        _print_table(path_kind, by_variant, options.reps)
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


def _prepare(db: BenchDatabase, work: Path, accounts: int) -> dict[str, str]:
    """The service's settings (returned), its database with `accounts` accounts, the request lists."""
    env = service_env(db.sqlalchemy_url, "http://127.0.0.1:9", "http://127.0.0.1:9/oauth/callback")
    env["ALLEGRO_LINK_KEEPALIVE_ENABLED"] = "false"
    key = migrate_and_create_key(env, "cpu", "tokens:read")
    env["BENCH_FLOOR_API_KEY"] = key
    ids = seed_accounts(db.dsn, env["ALLEGRO_LINK_ENCRYPTION_KEYS"], 0, accounts).ids
    owners = max(1, accounts // ACCOUNTS_PER_OWNER)
    asyncio.run(_regroup_owners(db.dsn, owners))
    random.Random(1).shuffle(ids)  # noqa: S311 - the same order in every run, not security
    (work / "token.txt").write_text("".join(f"/accounts/{i}/token\t{key}\n" for i in ids))
    (work / "list.txt").write_text(
        "".join(f"/accounts?limit={LIST_PAGE}\t{owner_jwt(owner_of(n))}\n" for n in range(owners))
    )
    return env


async def _regroup_owners(dsn: str, owners: int) -> None:
    """Fewer owners with more accounts each, as at `make bench`'s largest size (the seed spreads
    accounts over 1,000 owners)."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE accounts SET owner_id = 'owner-' || to_char(abs(hashtext(id::text)) % $1, 'FM0000')",
            owners,
        )
        await connection.execute("VACUUM ANALYZE accounts")
    finally:
        await connection.close()


def _run_child(
    options: argparse.Namespace, work: Path, env: dict[str, str], name: str, path_kind: str, *extra: str
) -> float:
    app_name, patches = (VARIANTS | LIST_VARIANTS)[name]
    argv = [sys.executable, __file__, "--child", app_name, ",".join(patches), path_kind, "--work", str(work)]
    argv += ["--requests", str(options.requests), "--list-requests", str(options.list_requests)]
    argv += ["--concurrency", str(options.concurrency), *extra]
    completed = subprocess.run(  # noqa: S603 - this script, in this interpreter
        argv,
        env={**env, "PYTHONPATH": str(Path(__file__).parent)},
        check=False,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{name}: {completed.stderr[-3000:]}")
    cost: float = json.loads(completed.stdout.strip().splitlines()[-1])["cpu_us"]
    return cost


def _measure(
    options: argparse.Namespace, work: Path, env: dict[str, str], path_kind: str
) -> dict[str, list[float]]:
    """CPU µs per request of each variant, `options.reps` times, interleaved so that drifts hit all alike."""
    variants = VARIANTS if path_kind == "token" else LIST_VARIANTS
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(options.reps):
        for name in variants:
            results[name].append(_run_child(options, work, env, name, path_kind))
    return results


def _profile(options: argparse.Namespace, work: Path, env: dict[str, str], path_kind: str) -> None:
    cost = _run_child(options, work, env, options.profile, path_kind, "--profile", options.profile)
    print(f"{options.profile}, {path_kind}: {cost:.0f} µs per request (under the profiler)")
    pstats.Stats(str(work / "profile.out")).sort_stats(options.sort).print_stats(options.top)


def _print_table(path_kind: str, results: dict[str, list[float]], reps: int) -> None:
    floor = min(results[FLOOR])
    ours = min(results["ours"])
    when = time.strftime("%Y-%m-%d %H:%M")
    what = "fresh-token request" if path_kind == "token" else f"`GET /accounts` page of {LIST_PAGE}"
    print(f"CPU per {what}, in process (lowest of {reps}; {when}):")
    print()
    print("| app | µs per request | vs floor | what the step costs |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        cost = min(values)
        step = f"{ours - cost:.0f} µs" if name.startswith("ours without") else ""
        print(f"| {name} | {cost:.0f} | {cost / floor:.2f} | {step} |")
    print()


if __name__ == "__main__":
    sys.exit(main())
