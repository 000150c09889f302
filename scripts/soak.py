"""Soak test: a mixed workload against `allegro-link serve`, the fake Allegro and PostgreSQL, with one
database restart in the middle, then a consistency check of every account.

    .venv/bin/python scripts/soak.py                      # 5 minutes, 8 workers, restart at 2:30
    .venv/bin/python scripts/soak.py --duration 60 --workers 4 --json soak.json

Everything runs on this machine: an embedded PostgreSQL in a temp dir (the one that is restarted; the
machine's own server is never touched), `allegro-link fake-allegro` and `allegro-link serve` on free
ports of 127.0.0.1. The fake issues 10-minute access tokens, so refreshes happen on their own as well
as on demand. Exit code 0 when the final check passes and no unexpected error was seen.

Workload (weights): token reads 50, forced refreshes 12, account lists 10, account reads 8, new links
10, re-logins 4, deletes 6 (scripts/soak_workload.py). Errors are counted by kind (`status code` or
`transport Error`); a 503 from the moment the database stops until 15 s after /readyz is green again
is expected, anything else (a 5xx, a 409 relogin_required, a token that does not work at Allegro) is not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from allegro_link.accounts.models import Account
from allegro_link.auth.api_keys import create_api_key
from allegro_link.crypto.keys import KeyRing, generate_key_entry
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import create_engine, create_sessionmaker
from allegro_link.demo.owner_token import OwnerTokenMinter
from allegro_link.devtools.processes import (
    Processes,
    child_env,
    cli_argv,
    free_port,
    serve_argv,
    wait_ready,
)
from allegro_link.embedded_pg import EmbeddedPostgres, create_database
from allegro_link.migrations_path import alembic_config
from allegro_link.settings import DatabaseSettings, parse_encryption_keys
from soak_workload import ME_HEADERS, Clients, Target, Workload, clients

CLIENT_ID = "allegro-link-soak"
RETURN_URL_ALLOWLIST = "https://panel.example.com/allegro/"
FAKE_ACCESS_TTL_SECONDS = 600


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.client_secret = secrets.token_urlsafe(24)
        self.jwt_secret = secrets.token_urlsafe(48)
        self.encryption_keys = generate_key_entry()
        self.workdir = Path(tempfile.mkdtemp(prefix="allegro-link-soak-"))
        self.processes = Processes(self.workdir)
        self.postgres = EmbeddedPostgres(self.workdir / "pgdata", delete_on_exit=True)

    # -- setup ------------------------------------------------------------------------------------

    async def setup(self) -> None:
        await asyncio.to_thread(self.postgres.start)
        await create_database(self.postgres.url("postgres"), "soak")
        self.database_url = self.postgres.url("soak")
        await asyncio.to_thread(command.upgrade, alembic_config(self.database_url), "head")
        fake_port, service_port = free_port(), free_port()
        fake = self.processes.spawn(
            "fake-allegro",
            cli_argv("fake-allegro", "--controls", "--port", str(fake_port)),
            port=fake_port,
            env=self._fake_env(service_port),
        )
        self.service = self.processes.spawn(
            "serve",
            serve_argv(service_port),
            port=service_port,
            env=self._service_env(fake.url, service_port),
        )
        await asyncio.to_thread(fake.wait_ready, "/__fake__/stats")
        await asyncio.to_thread(self.service.wait_ready, "/readyz")
        target = Target(self.service.url, fake.url, await self._api_key(), OwnerTokenMinter(self.jwt_secret))
        self.workload = Workload(target, seed=self.args.seed, keep_accounts=self.args.accounts // 2)

    @staticmethod
    def _redirect_uri(service_port: int) -> str:
        return f"http://localhost:{service_port}/oauth/callback"

    def _fake_env(self, service_port: int) -> dict[str, str]:
        return child_env(
            {
                "ALLEGRO_LINK_FAKE_CLIENT_ID": CLIENT_ID,
                "ALLEGRO_LINK_FAKE_CLIENT_SECRET": self.client_secret,
                "ALLEGRO_LINK_FAKE_REDIRECT_URIS": self._redirect_uri(service_port),
                "ALLEGRO_LINK_FAKE_ACCESS_TTL": str(FAKE_ACCESS_TTL_SECONDS),
            }
        )

    def _service_env(self, fake_url: str, service_port: int) -> dict[str, str]:
        return child_env(
            {
                "ALLEGRO_LINK_DATABASE_URL": self.database_url,
                "ALLEGRO_LINK_ENCRYPTION_KEYS": self.encryption_keys,
                "ALLEGRO_LINK_CLIENT_ID": CLIENT_ID,
                "ALLEGRO_LINK_CLIENT_SECRET": self.client_secret,
                "ALLEGRO_LINK_REDIRECT_URI": self._redirect_uri(service_port),
                "ALLEGRO_LINK_ALLEGRO_AUTH_URL": fake_url,
                "ALLEGRO_LINK_ALLEGRO_API_URL": fake_url,
                "ALLEGRO_LINK_RETURN_URL_ALLOWLIST": RETURN_URL_ALLOWLIST,
                "ALLEGRO_LINK_OWNER_JWT_SECRET": self.jwt_secret,
                "ALLEGRO_LINK_DB_CONNECT_TIMEOUT_SECONDS": "2",
                "ALLEGRO_LINK_LOG_LEVEL": "WARNING",
            }
        )

    def _engine(self) -> AsyncEngine:
        return create_engine(DatabaseSettings(database_url=self.database_url, _env_file=None))

    async def _api_key(self) -> str:
        engine = self._engine()
        try:
            async with create_sessionmaker(engine).begin() as session:
                return await create_api_key(session, name="soak", scopes=["tokens:read", "accounts:read"])
        finally:
            await engine.dispose()

    async def wait_ready(self, within: float) -> float:
        """Seconds until the service's /readyz answers 200."""
        return await asyncio.to_thread(wait_ready, f"{self.service.url}/readyz", within=within)

    # -- the run ----------------------------------------------------------------------------------

    async def restart_database(self, at: float) -> None:
        stats = self.workload.stats
        await asyncio.sleep(max(0.0, at - (time.monotonic() - stats.started)))
        stats.restart["stopped_at"] = time.monotonic()
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.sleep(self.args.downtime)
        await asyncio.to_thread(self.postgres.start)
        stats.restart["started_at"] = time.monotonic()
        await self.wait_ready(60)
        stats.restart["ready_at"] = time.monotonic()

    async def run(self) -> None:
        async with clients(self.workload.target) as both:
            for _ in range(self.args.accounts):
                await self.workload.link(both)
        self.workload.stats.started = time.monotonic()
        deadline = self.workload.stats.started + self.args.duration
        restart = asyncio.create_task(self.restart_database(self.args.restart_at))
        await asyncio.gather(*(self.workload.worker(deadline) for _ in range(self.args.workers)))
        await restart

    # -- the final check --------------------------------------------------------------------------

    async def check(self) -> dict[str, Any]:
        workload = self.workload
        await self.wait_ready(60)
        await asyncio.sleep(2)  # a pair held in memory during the outage is written within a second
        problems: list[str] = []
        vault = TokenVault(KeyRing(parse_encryption_keys(self.encryption_keys)))
        engine = self._engine()
        checked = 0
        try:
            async with engine.connect() as connection:
                rows = (await connection.execute(select(Account))).all()
            async with clients(workload.target) as both:
                for row in rows:
                    checked += 1
                    problem = await self._check_account(both, engine, vault, row)
                    if problem:
                        problems.append(f"{row.id}: {problem}")
                for account_id in workload.deleted:
                    gone = await both.service.get(
                        f"/accounts/{account_id}",
                        headers=workload.target.as_owner(workload.accounts[account_id].owner),
                    )
                    if gone.status_code != 404:
                        problems.append(f"{account_id}: deleted but answers {gone.status_code}")
        finally:
            await engine.dispose()
        known_live = {i for i in workload.accounts if i not in workload.deleted}
        missing = known_live - {str(r.id) for r in rows}
        problems += [f"{account_id}: linked but missing" for account_id in sorted(missing)]
        return {"accounts_checked": checked, "deleted_checked": len(workload.deleted), "problems": problems}

    async def _check_account(
        self, both: Clients, engine: AsyncEngine, vault: TokenVault, row: Any
    ) -> str | None:
        account_id = str(row.id)
        if account_id in self.workload.deleted:
            return "deleted but still stored"
        status = getattr(row.status, "value", row.status)
        if status != "active":
            return f"{status} ({row.relogin_reason})"
        # A refresh with the stored refresh token (min_valid_for beyond the 10-minute lifetime); then
        # the token served must be the one stored, and must work at Allegro.
        served = await both.service.get(
            f"/accounts/{account_id}/token?min_valid_for=3600", headers=self.workload.target.as_service
        )
        if served.status_code != 200:
            return f"refresh answered {served.status_code} {served.text[:100]}"
        access = served.json()["access_token"]
        me = await both.fake.get("/me", headers={**ME_HEADERS, "Authorization": f"Bearer {access}"})
        if me.status_code != 200:
            return f"served token refused by Allegro ({me.status_code})"
        async with engine.connect() as connection:
            blob = await connection.scalar(
                select(Account.access_token_ciphertext).where(Account.id == uuid.UUID(account_id))
            )
        stored = vault.open(Account.access_token_ciphertext, row.id, blob) if blob else None
        if stored != access:
            return "served token is not the stored one"
        return None

    def teardown(self, *, keep_logs: bool) -> None:
        self.processes.close()
        with contextlib.suppress(Exception):
            self.postgres.cleanup()
        if keep_logs:
            print(f"soak: service and fake logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def report(self, check: dict[str, Any]) -> dict[str, Any]:
        stats, workload = self.workload.stats, self.workload
        restart = stats.restart
        latency = {}
        for op, samples in sorted(stats.latency.items()):
            ordered = sorted(samples)
            latency[op] = {
                "p50_ms": round(statistics.median(ordered) * 1000, 1),
                "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1),
                "max_ms": round(ordered[-1] * 1000, 1),
            }
        return {
            "duration_s": self.args.duration,
            "workers": self.args.workers,
            "requests_total": sum(stats.requests.values()),
            "requests": dict(stats.requests),
            "outcomes": dict(sorted(stats.outcomes.items())),
            "expected_errors": dict(stats.expected_errors),
            "unexpected_errors": dict(stats.unexpected_errors),
            "latency": latency,
            "database_restart": {
                "down_s": round(restart.get("started_at", 0) - restart.get("stopped_at", 0), 1),
                "ready_again_after_start_s": round(
                    restart.get("ready_at", 0) - restart.get("started_at", 0), 1
                ),
            },
            "accounts_linked": len(workload.accounts),
            "accounts_deleted": len(workload.deleted),
            "final_check": check,
            "notes": stats.notes[:20],
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of mixed workload")
    parser.add_argument("--workers", type=int, default=8, help="concurrent clients")
    parser.add_argument("--accounts", type=int, default=20, help="accounts linked before the run")
    parser.add_argument("--restart-at", type=float, default=None, help="seconds in (default: half way)")
    parser.add_argument("--downtime", type=float, default=5.0, help="seconds the database stays down")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    if args.restart_at is None:
        args.restart_at = args.duration / 2
    soak = Soak(args)

    async def go() -> dict[str, Any]:
        await soak.setup()
        await soak.run()
        return soak.report(await soak.check())

    failed = True
    try:
        report = asyncio.run(go())
        failed = bool(report["final_check"]["problems"] or report["unexpected_errors"])
    finally:
        soak.teardown(keep_logs=failed)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print("soak: FAILED" if failed else "soak: passed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
