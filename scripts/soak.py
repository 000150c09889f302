"""Soak test: a mixed workload against `allegro-link serve`, the fake Allegro and PostgreSQL, with one
database restart in the middle, then a consistency check of every account.

    .venv/bin/python scripts/soak.py                      # 5 minutes, 8 workers, restart at 2:30
    .venv/bin/python scripts/soak.py --duration 60 --workers 4 --json soak.json

Everything runs on this machine: an embedded PostgreSQL in a temp dir (the one that is restarted; the
machine's own server is never touched), `allegro-link fake-allegro` and `allegro-link serve` on free
ports of 127.0.0.1. The fake issues 10-minute access tokens, so refreshes happen on their own as well
as on demand. Exit code 0 when the final check passes and no unexpected error was seen.

Workload (weights): token reads 50, forced refreshes 12, account lists 10, account reads 8, new links
10, re-logins 4, deletes 6. Errors are counted by kind (`status code` or `transport Error`); a 503 from
the moment the database stops until 15 s after /readyz is green again is expected, anything else
(a 5xx, a 409 relogin_required, a token that does not work at Allegro) is not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from alembic import command
from sqlalchemy import select

from allegro_link.accounts.models import Account
from allegro_link.auth.api_keys import create_api_key
from allegro_link.crypto.keys import KeyRing, generate_key_entry
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import create_sessionmaker
from allegro_link.embedded_pg import EmbeddedPostgres, create_database
from allegro_link.migrations_path import alembic_config
from allegro_link.settings import parse_encryption_keys

CLIENT_ID = "allegro-link-soak"
CLIENT_SECRET = secrets.token_urlsafe(24)
RETURN_TO = "https://panel.example.com/allegro/konta"
ME_HEADERS = {"Accept": "application/vnd.allegro.public.v1+json"}
EXPECTED_AFTER_RESTART = 15.0
WEIGHTS = {"token": 50, "refresh": 12, "list": 10, "get": 8, "link": 10, "relogin": 4, "delete": 6}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Known:
    owner: str
    login: str
    last_token: str | None = None


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    requests: Counter[str] = field(default_factory=Counter)  # by operation
    outcomes: Counter[str] = field(default_factory=Counter)  # "op: status code"
    expected_errors: Counter[str] = field(default_factory=Counter)
    unexpected_errors: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    restart: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def in_outage(self) -> bool:
        now = time.monotonic()
        stopped = self.restart.get("stopped_at")
        ready = self.restart.get("ready_at")
        if stopped is None or now < stopped:
            return False
        return ready is None or now < ready + EXPECTED_AFTER_RESTART


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)  # noqa: S311 - workload choice, not security
        self.stats = Stats()
        self.accounts: dict[str, Known] = {}
        self.deleted: set[str] = set()
        self.deleting: set[str] = set()
        self.logins = 0
        self.jwt_secret = secrets.token_urlsafe(48)
        self.encryption_keys = generate_key_entry()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="allegro-link-soak-"))
        self.postgres = EmbeddedPostgres(self.workdir / "pgdata", delete_on_exit=True)

    # -- setup ------------------------------------------------------------------------------------

    async def setup(self) -> None:
        await asyncio.to_thread(self.postgres.start)
        await create_database(self.postgres.url("postgres"), "soak")
        self.database_url = self.postgres.url("soak")
        await asyncio.to_thread(command.upgrade, alembic_config(self.database_url), "head")
        self.fake_url = f"http://127.0.0.1:{free_port()}"
        service_port = free_port()
        self.service_url = f"http://127.0.0.1:{service_port}"
        redirect_uri = f"http://localhost:{service_port}/oauth/callback"
        base = {k: v for k, v in os.environ.items() if not k.startswith("ALLEGRO_LINK_")}
        fake_env = {
            **base,
            "ALLEGRO_LINK_FAKE_CLIENT_ID": CLIENT_ID,
            "ALLEGRO_LINK_FAKE_CLIENT_SECRET": CLIENT_SECRET,
            "ALLEGRO_LINK_FAKE_REDIRECT_URIS": redirect_uri,
            "ALLEGRO_LINK_FAKE_ACCESS_TTL": "600",
        }
        service_env = {
            **base,
            "ALLEGRO_LINK_DATABASE_URL": self.database_url,
            "ALLEGRO_LINK_ENCRYPTION_KEYS": self.encryption_keys,
            "ALLEGRO_LINK_CLIENT_ID": CLIENT_ID,
            "ALLEGRO_LINK_CLIENT_SECRET": CLIENT_SECRET,
            "ALLEGRO_LINK_REDIRECT_URI": redirect_uri,
            "ALLEGRO_LINK_ALLEGRO_AUTH_URL": self.fake_url,
            "ALLEGRO_LINK_ALLEGRO_API_URL": self.fake_url,
            "ALLEGRO_LINK_RETURN_URL_ALLOWLIST": "https://panel.example.com/allegro/",
            "ALLEGRO_LINK_OWNER_JWT_SECRET": self.jwt_secret,
            "ALLEGRO_LINK_DB_CONNECT_TIMEOUT_SECONDS": "2",
            "ALLEGRO_LINK_LOG_LEVEL": "WARNING",
        }
        self._spawn("fake-allegro", ["--controls", "--port", self.fake_url.rsplit(":", 1)[1]], fake_env)
        self._spawn("serve", ["--host", "127.0.0.1", "--port", str(service_port)], service_env)
        await self._wait_ready(self.fake_url + "/__fake__/stats", 30)
        await self._wait_ready(self.service_url + "/readyz", 30)
        self.api_key = await self._api_key()

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(  # noqa: S603 - our own CLI
                [sys.executable, "-m", "allegro_link.cli", name, *args], env=env, stdout=log, stderr=log
            )
        )

    async def _wait_ready(self, url: str, within: float) -> float:
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return time.monotonic() - started
                if time.monotonic() - started > within:
                    raise RuntimeError(f"{url} did not become ready in {within}s")
                await asyncio.sleep(0.1)

    async def _api_key(self) -> str:
        from allegro_link.db import create_engine
        from allegro_link.settings import DatabaseSettings

        engine = create_engine(DatabaseSettings(database_url=self.database_url, _env_file=None))  # type: ignore[call-arg]
        try:
            async with create_sessionmaker(engine).begin() as session:
                return await create_api_key(session, name="soak", scopes=["tokens:read", "accounts:read"])
        finally:
            await engine.dispose()

    def owner_jwt(self, owner: str) -> dict[str, str]:
        now = int(time.time())
        token = jwt.encode({"sub": owner, "iat": now, "exp": now + 3600}, self.jwt_secret, algorithm="HS256")
        return {"Authorization": f"Bearer {token}"}

    @property
    def service_key(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    # -- bookkeeping ------------------------------------------------------------------------------

    async def call(
        self,
        http: httpx.AsyncClient,
        op: str,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...],
        account_id: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        self.stats.requests[op] += 1
        started = time.monotonic()
        try:
            response = await http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self._error(op, f"transport {type(exc).__name__}")
            return None
        finally:
            self.stats.latency[op].append(time.monotonic() - started)
        self.stats.outcomes[f"{op}: {response.status_code}"] += 1
        if response.status_code not in ok:
            code = ""
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                code = response.json().get("code", "")
            # A delete that wins the race: 404, or 400 at the callback of a re-login whose state was
            # deleted with the account (cascade).
            raced = response.status_code in (400, 404) and account_id in (self.deleted | self.deleting)
            self._error(op, f"{response.status_code} {code}".strip(), expected=raced)
            if response.status_code >= 500 and not self.stats.in_outage():
                self.stats.notes.append(f"{op} {method} {urlsplit(url).path}: {response.status_code} {code}")
        return response

    def _error(self, op: str, kind: str, *, expected: bool = False) -> None:
        # A 404 that raced with a delete is fine (the final check makes sure deleted ones stay gone);
        # so are 503s and dropped connections while the database restarts.
        if not expected and self.stats.in_outage() and kind.startswith(("503", "transport")):
            expected = True
            ready_at = self.stats.restart.get("ready_at")
            if ready_at is not None and time.monotonic() > ready_at:
                kind += " (after /readyz was green again)"
        (self.stats.expected_errors if expected else self.stats.unexpected_errors)[f"{op}: {kind}"] += 1

    def pick(self) -> tuple[str, Known] | None:
        live = [(i, k) for i, k in self.accounts.items() if i not in self.deleted]
        if not live:
            return None
        return self.rng.choice(live)

    # -- operations -------------------------------------------------------------------------------

    async def link(self, http: httpx.AsyncClient, account_id: str | None = None) -> None:
        op = "relogin" if account_id else "link"
        if account_id:
            known = self.accounts[account_id]
            owner, login = known.owner, known.login
            path = f"{self.service_url}/accounts/{account_id}/authorize"
        else:
            self.logins += 1
            owner, login = f"owner-{self.rng.randint(1, 5)}", f"soak{self.logins}"
            path = f"{self.service_url}/accounts/authorize"
        started = await self.call(
            http,
            op,
            "POST",
            path,
            ok=(201,),
            account_id=account_id,
            json={"return_to": RETURN_TO},
            headers=self.owner_jwt(owner),
        )
        if started is None or started.status_code != 201:
            return
        query = {k: v[0] for k, v in parse_qs(urlsplit(started.json()["authorization_url"]).query).items()}
        consent = await http.post(
            f"{self.fake_url}/__fake__/authorize",
            json={
                "client_id": query["client_id"],
                "redirect_uri": query["redirect_uri"],
                "login": login,
                "state": query["state"],
                "code_challenge": query["code_challenge"],
                "code_challenge_method": query["code_challenge_method"],
            },
        )
        callback_query = urlsplit(consent.json()["redirect"]).query
        callback = await self.call(
            http,
            op,
            "GET",
            f"{self.service_url}/oauth/callback?{callback_query}",
            ok=(303,),
            account_id=account_id,
        )
        if callback is None or callback.status_code != 303:
            return
        returned = parse_qs(urlsplit(callback.headers["location"]).query)
        if returned.get("allegro_link") != ["complete"]:
            self._error(op, f"callback {returned.get('error', ['?'])[0]}")
            return
        completed = await self.call(
            http,
            op,
            "POST",
            f"{self.service_url}/oauth/complete",
            ok=(200,),
            account_id=account_id,
            json={"link_session": returned["link_session"][0]},
            headers=self.owner_jwt(owner),
        )
        if completed is not None and completed.status_code == 200:
            body = completed.json()
            self.accounts.setdefault(body["account"]["id"], Known(owner, login))

    async def token(self, http: httpx.AsyncClient) -> None:
        chosen = self.pick()
        if chosen is None:
            return
        account_id, known = chosen
        min_valid = 300 if self.rng.random() < 0.8 else self.rng.randint(0, 1200)
        response = await self.call(
            http,
            "token",
            "GET",
            f"{self.service_url}/accounts/{account_id}/token?min_valid_for={min_valid}",
            ok=(200,),
            account_id=account_id,
            headers=self.service_key,
        )
        if response is None or response.status_code != 200:
            return
        served = known.last_token = response.json()["access_token"]
        if self.rng.random() < 0.1:  # use it, as an internal service would
            me = await http.get(
                f"{self.fake_url}/me", headers={**ME_HEADERS, "Authorization": f"Bearer {served}"}
            )
            if me.status_code != 200:
                # Legitimate only if a refresh replaced it meanwhile: then the service holds another.
                again = await http.get(
                    f"{self.service_url}/accounts/{account_id}/token?min_valid_for=0",
                    headers=self.service_key,
                )
                if again.status_code == 200 and again.json()["access_token"] == served:
                    self.stats.unexpected_errors["token: served token dead at Allegro"] += 1
                    self.stats.notes.append(f"{account_id}: served token dead at Allegro: {me.text[:200]}")
                else:
                    self.stats.expected_errors["token: replaced by a concurrent refresh"] += 1

    async def refresh(self, http: httpx.AsyncClient) -> None:
        chosen = self.pick()
        if chosen is None:
            return
        account_id, known = chosen
        body = {"rejected_token": known.last_token} if known.last_token and self.rng.random() < 0.7 else None
        response = await self.call(
            http,
            "refresh",
            "POST",
            f"{self.service_url}/accounts/{account_id}/token/refresh",
            ok=(200,),
            account_id=account_id,
            json=body,
            headers=self.service_key,
        )
        if response is not None and response.status_code == 200:
            known.last_token = response.json()["access_token"]

    async def list_(self, http: httpx.AsyncClient) -> None:
        owner = f"owner-{self.rng.randint(1, 5)}"
        query = self.rng.choice(["", "?status=active", "?limit=5", "?status=relogin_required"])
        await self.call(
            http,
            "list",
            "GET",
            f"{self.service_url}/accounts{query}",
            ok=(200,),
            headers=self.owner_jwt(owner),
        )

    async def get(self, http: httpx.AsyncClient) -> None:
        chosen = self.pick()
        if chosen is None:
            return
        account_id, known = chosen
        response = await self.call(
            http,
            "get",
            "GET",
            f"{self.service_url}/accounts/{account_id}",
            ok=(200,),
            account_id=account_id,
            headers=self.owner_jwt(known.owner),
        )
        if response is not None and response.status_code == 200 and response.json()["status"] != "active":
            self.stats.unexpected_errors[f"get: status {response.json()['relogin_reason']}"] += 1

    async def delete(self, http: httpx.AsyncClient) -> None:
        if len(self.accounts) - len(self.deleted) <= self.args.accounts // 2:
            return
        chosen = self.pick()
        if chosen is None:
            return
        account_id, known = chosen
        if account_id in self.deleting:
            return
        self.deleting.add(account_id)
        try:
            response = await self.call(
                http,
                "delete",
                "DELETE",
                f"{self.service_url}/accounts/{account_id}",
                ok=(204,),
                account_id=account_id,
                headers=self.owner_jwt(known.owner),
            )
        finally:
            self.deleting.discard(account_id)
        if response is not None and response.status_code in (204, 404):
            self.deleted.add(account_id)

    # -- the run ----------------------------------------------------------------------------------

    async def worker(self, deadline: float) -> None:
        ops = list(WEIGHTS)
        weights = list(WEIGHTS.values())
        async with httpx.AsyncClient(timeout=30) as http:
            while time.monotonic() < deadline:
                op = self.rng.choices(ops, weights)[0]
                if op == "relogin":
                    chosen = self.pick()
                    if chosen is not None:
                        await self.link(http, chosen[0])
                else:
                    await {
                        "token": self.token,
                        "refresh": self.refresh,
                        "list": self.list_,
                        "get": self.get,
                        "link": self.link,
                        "delete": self.delete,
                    }[op](http)

    async def restart_database(self, at: float) -> None:
        await asyncio.sleep(max(0.0, at - (time.monotonic() - self.stats.started)))
        self.stats.restart["stopped_at"] = time.monotonic()
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.sleep(self.args.downtime)
        await asyncio.to_thread(self.postgres.start)
        self.stats.restart["started_at"] = time.monotonic()
        await self._wait_ready(self.service_url + "/readyz", 60)
        self.stats.restart["ready_at"] = time.monotonic()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            for _ in range(self.args.accounts):
                await self.link(http)
        self.stats.started = time.monotonic()
        deadline = self.stats.started + self.args.duration
        restart = asyncio.create_task(self.restart_database(self.args.restart_at))
        await asyncio.gather(*(self.worker(deadline) for _ in range(self.args.workers)))
        await restart

    # -- the final check --------------------------------------------------------------------------

    async def check(self) -> dict[str, Any]:
        await self._wait_ready(self.service_url + "/readyz", 60)
        await asyncio.sleep(2)  # a pair held in memory during the outage is written within a second
        problems: list[str] = []
        vault = TokenVault(KeyRing(parse_encryption_keys(self.encryption_keys)))
        from allegro_link.db import create_engine
        from allegro_link.settings import DatabaseSettings

        engine = create_engine(DatabaseSettings(database_url=self.database_url, _env_file=None))  # type: ignore[call-arg]
        checked = 0
        try:
            async with engine.connect() as connection:
                rows = (await connection.execute(select(Account))).all()
            async with httpx.AsyncClient(timeout=30) as http:
                for row in rows:
                    checked += 1
                    problem = await self._check_account(http, engine, vault, row)
                    if problem:
                        problems.append(f"{row.id}: {problem}")
                for account_id in self.deleted:
                    gone = await http.get(
                        f"{self.service_url}/accounts/{account_id}",
                        headers=self.owner_jwt(self.accounts[account_id].owner),
                    )
                    if gone.status_code != 404:
                        problems.append(f"{account_id}: deleted but answers {gone.status_code}")
        finally:
            await engine.dispose()
        known_live = {i for i in self.accounts if i not in self.deleted}
        missing = known_live - {str(r.id) for r in rows}
        problems += [f"{account_id}: linked but missing" for account_id in sorted(missing)]
        return {"accounts_checked": checked, "deleted_checked": len(self.deleted), "problems": problems}

    async def _check_account(
        self, http: httpx.AsyncClient, engine: Any, vault: TokenVault, row: Any
    ) -> str | None:
        account_id = str(row.id)
        if account_id in self.deleted:
            return "deleted but still stored"
        status = getattr(row.status, "value", row.status)
        if status != "active":
            return f"{status} ({row.relogin_reason})"
        # A refresh with the stored refresh token (min_valid_for beyond the 10-minute lifetime); then
        # the token served must be the one stored, and must work at Allegro.
        served = await http.get(
            f"{self.service_url}/accounts/{account_id}/token?min_valid_for=3600", headers=self.service_key
        )
        if served.status_code != 200:
            return f"refresh answered {served.status_code} {served.text[:100]}"
        access = served.json()["access_token"]
        me = await http.get(
            f"{self.fake_url}/me", headers={**ME_HEADERS, "Authorization": f"Bearer {access}"}
        )
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
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(Exception):
            self.postgres.cleanup()
        if keep_logs:
            print(f"soak: service and fake logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def report(self, check: dict[str, Any]) -> dict[str, Any]:
        restart = self.stats.restart
        latency = {}
        for op, samples in sorted(self.stats.latency.items()):
            ordered = sorted(samples)
            latency[op] = {
                "p50_ms": round(statistics.median(ordered) * 1000, 1),
                "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1),
                "max_ms": round(ordered[-1] * 1000, 1),
            }
        return {
            "duration_s": self.args.duration,
            "workers": self.args.workers,
            "requests_total": sum(self.stats.requests.values()),
            "requests": dict(self.stats.requests),
            "outcomes": dict(sorted(self.stats.outcomes.items())),
            "expected_errors": dict(self.stats.expected_errors),
            "unexpected_errors": dict(self.stats.unexpected_errors),
            "latency": latency,
            "database_restart": {
                "down_s": round(restart.get("started_at", 0) - restart.get("stopped_at", 0), 1),
                "ready_again_after_start_s": round(
                    restart.get("ready_at", 0) - restart.get("started_at", 0), 1
                ),
            },
            "accounts_linked": len(self.accounts),
            "accounts_deleted": len(self.deleted),
            "final_check": check,
            "notes": self.stats.notes[:20],
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
