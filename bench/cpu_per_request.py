"""CPU per fresh-token request, ours next to the baseline, and what each of our steps costs.

wrk figures move with everything else on a shared 2-core machine; CPU seconds per request of one
process are steadier, and they are what the throughput ratio comes down to when both apps are CPU
bound. Each variant runs in a fresh interpreter that drives the ASGI app directly (no HTTP server,
so uvicorn's share, equal for both apps, is left out): a warm-up pass, then `--requests` requests at
`--concurrency`, CPU time of the process divided by the requests; the lowest of `--reps` runs.

The `ours without …` variants switch one step off by patching it out, to show what it costs:
the token audit record, the decryption of the token.

    .venv/bin/python bench/cpu_per_request.py            # about 1 minute; PostgreSQL at 127.0.0.1:5432
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import BenchDatabase, migrate_and_create_key, service_env, temp_workdir
from seed import seed_accounts

VARIANTS: dict[str, tuple[str, list[str]]] = {
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


def child(app_name: str, patches: list[str], work: Path, requests: int, concurrency: int) -> float:
    """Runs in its own interpreter: CPU µs per request of this process."""
    import uvloop
    from asgi_lifespan import LifespanManager

    lines = [line.split("\t") for line in (work / "requests.txt").read_text().splitlines()]
    if app_name == "ours":
        from allegro_link.app import create_app
        from allegro_link.logs import configure_logging
        from allegro_link.settings import Settings, load_settings

        settings = load_settings(Settings)
        configure_logging(settings.log_level, json=True, stream=(work / "service.log").open("a"))
        _patch(patches)
        application: Any = create_app(settings)
    else:
        import baseline_app

        application = baseline_app.create_app()

    async def one(app: Any, path: str, key: str) -> None:
        status: list[int] = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
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
            before = resource.getrusage(resource.RUSAGE_SELF)
            await asyncio.gather(*(worker(k) for k in range(concurrency)))
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            return 1e6 * cpu / requests

    return uvloop.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("APP", "PATCHES"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        app_name, patches = options.child
        enabled = [p for p in patches.split(",") if p]
        cost = child(app_name, enabled, options.work, options.requests, options.concurrency)
        print(json.dumps({"cpu_us": cost}))
        return 0

    work = temp_workdir()
    db = BenchDatabase.create()
    try:
        env = _prepare(db, work, options.accounts)
        results = _measure(options, work, env)
    finally:
        db.drop()
        shutil.rmtree(work, ignore_errors=True)
    _print_table(results, options.reps)
    return 0


def _prepare(db: BenchDatabase, work: Path, accounts: int) -> dict[str, str]:
    """The service's settings (returned), its database with `accounts` accounts, the request list."""
    env = service_env(db.sqlalchemy_url, "http://127.0.0.1:9", "http://127.0.0.1:9/oauth/callback")
    env["ALLEGRO_LINK_KEEPALIVE_ENABLED"] = "false"
    key = migrate_and_create_key(env, "cpu", "tokens:read")
    ids = asyncio.run(seed_accounts(db.dsn, env["ALLEGRO_LINK_ENCRYPTION_KEYS"], 0, accounts))
    random.Random(1).shuffle(ids)  # noqa: S311 - the same order in every run, not security
    (work / "requests.txt").write_text("".join(f"/accounts/{i}/token\t{key}\n" for i in ids))
    return env


def _measure(options: argparse.Namespace, work: Path, env: dict[str, str]) -> dict[str, list[float]]:
    """CPU µs per request of each variant, `options.reps` times, interleaved so that drifts hit all alike."""
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(options.reps):
        for name, (app_name, patches) in VARIANTS.items():
            argv = [sys.executable, __file__, "--child", app_name, ",".join(patches), "--work", str(work)]
            argv += ["--requests", str(options.requests), "--concurrency", str(options.concurrency)]
            completed = subprocess.run(  # noqa: S603 - this script, in this interpreter
                argv,
                env={**env, "PYTHONPATH": str(Path(__file__).parent)},
                check=False,
                capture_output=True,
                text=True,
            )
            if completed.returncode != 0:
                raise RuntimeError(f"{name}: {completed.stderr[-3000:]}")
            results[name].append(json.loads(completed.stdout.strip().splitlines()[-1])["cpu_us"])
    return results


def _print_table(results: dict[str, list[float]], reps: int) -> None:
    base = min(results["baseline"])
    ours = min(results["ours"])
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"CPU per fresh-token request, in process (lowest of {reps}; {when}):")
    print()
    print("| app | µs per request | vs baseline | what the step costs |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        cost = min(values)
        step = f"{ours - cost:.0f} µs" if name.startswith("ours without") else ""
        print(f"| {name} | {cost:.0f} | {cost / base:.2f} | {step} |")
    print()
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
