"""The soak's mixed workload: what each operation does, and how its outcomes are counted.

Errors are counted by kind (`status code` or `transport Error`); a 503 from the moment the database
stops until EXPECTED_AFTER_RESTART seconds after /readyz is green again is expected, and so is a 404
(or a 400 at a re-login's callback) that raced with a delete; anything else is not.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from allegro_link.allegro.client import ALLEGRO_MEDIA_TYPE
from allegro_link.demo.owner_token import OwnerTokenMinter
from allegro_link.devtools.consent import ConsentFailed, consent

RETURN_TO = "https://panel.example.com/allegro/konta"
ME_HEADERS = {"Accept": ALLEGRO_MEDIA_TYPE}
EXPECTED_AFTER_RESTART = 15.0
WEIGHTS = {"token": 50, "refresh": 12, "list": 10, "get": 8, "link": 10, "relogin": 4, "delete": 6}
OWNERS = 5
HTTP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Target:
    """What the workload talks to."""

    service_url: str
    fake_url: str
    api_key: str
    owners: OwnerTokenMinter

    def as_owner(self, owner: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.owners.mint(owner).token}"}

    @property
    def as_service(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass(frozen=True)
class Clients:
    service: httpx.AsyncClient
    fake: httpx.AsyncClient


@asynccontextmanager
async def clients(target: Target) -> AsyncIterator[Clients]:
    async with (
        httpx.AsyncClient(base_url=target.service_url, timeout=HTTP_TIMEOUT) as service,
        httpx.AsyncClient(base_url=target.fake_url, timeout=HTTP_TIMEOUT) as fake,
    ):
        yield Clients(service, fake)


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


class Workload:
    """The operations, the accounts they linked and deleted, and the counts of what they saw."""

    def __init__(self, target: Target, *, seed: int, keep_accounts: int) -> None:
        self.target = target
        self.rng = random.Random(seed)  # noqa: S311 - workload choice, not security
        self.keep_accounts = keep_accounts  # deletes stop at this many live accounts
        self.stats = Stats()
        self.accounts: dict[str, Known] = {}
        self.deleted: set[str] = set()
        self.deleting: set[str] = set()
        self.logins = 0

    # -- bookkeeping ------------------------------------------------------------------------------

    async def call(
        self,
        http: httpx.AsyncClient,
        op: str,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...],
        account_id: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        self.stats.requests[op] += 1
        started = time.monotonic()
        try:
            response = await http.request(method, path, **kwargs)
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
                self.stats.notes.append(f"{op} {method} {urlsplit(path).path}: {response.status_code} {code}")
        return response

    async def as_owner(
        self, http: httpx.AsyncClient, op: str, method: str, account_id: str, *, ok: tuple[int, ...]
    ) -> httpx.Response | None:
        """`method /accounts/{account_id}` as the account's owner."""
        owner = self.accounts[account_id].owner
        return await self.call(
            http,
            op,
            method,
            f"/accounts/{account_id}",
            ok=ok,
            account_id=account_id,
            headers=self.target.as_owner(owner),
        )

    async def as_service(
        self, http: httpx.AsyncClient, op: str, method: str, account_id: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        """`method /accounts/{account_id}{path}` as an internal service; 200 expected."""
        return await self.call(
            http,
            op,
            method,
            f"/accounts/{account_id}{path}",
            ok=(200,),
            account_id=account_id,
            headers=self.target.as_service,
            **kwargs,
        )

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

    async def link(self, clients: Clients, account_id: str | None = None) -> None:
        op = "relogin" if account_id else "link"
        if account_id:
            known = self.accounts[account_id]
            owner, login = known.owner, known.login
            path = f"/accounts/{account_id}/authorize"
        else:
            self.logins += 1
            owner, login = f"owner-{self.rng.randint(1, OWNERS)}", f"soak{self.logins}"
            path = "/accounts/authorize"
        http = clients.service
        started = await self.call(
            http,
            op,
            "POST",
            path,
            ok=(201,),
            account_id=account_id,
            json={"return_to": RETURN_TO},
            headers=self.target.as_owner(owner),
        )
        if started is None or started.status_code != 201:
            return
        try:
            redirect = await consent(clients.fake, started.json()["authorization_url"], login)
        except ConsentFailed as exc:
            self._error(op, f"consent {exc}")
            return
        callback = await self.call(
            http,
            op,
            "GET",
            f"/oauth/callback?{urlsplit(redirect).query}",
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
            "/oauth/complete",
            ok=(200,),
            account_id=account_id,
            json={"link_session": returned["link_session"][0]},
            headers=self.target.as_owner(owner),
        )
        if completed is not None and completed.status_code == 200:
            body = completed.json()
            self.accounts.setdefault(body["account"]["id"], Known(owner, login))

    async def token(self, clients: Clients) -> None:
        chosen = self.pick()
        if chosen is None:
            return
        account_id, known = chosen
        min_valid = 300 if self.rng.random() < 0.8 else self.rng.randint(0, 1200)
        response = await self.as_service(
            clients.service, "token", "GET", account_id, f"/token?min_valid_for={min_valid}"
        )
        if response is None or response.status_code != 200:
            return
        served = known.last_token = response.json()["access_token"]
        if self.rng.random() < 0.1:  # use it, as an internal service would
            me = await clients.fake.get("/me", headers={**ME_HEADERS, "Authorization": f"Bearer {served}"})
            if me.status_code != 200:
                # Legitimate only if a refresh replaced it meanwhile: then the service holds another.
                again = await clients.service.get(
                    f"/accounts/{account_id}/token?min_valid_for=0", headers=self.target.as_service
                )
                if again.status_code == 200 and again.json()["access_token"] == served:
                    self.stats.unexpected_errors["token: served token dead at Allegro"] += 1
                    self.stats.notes.append(f"{account_id}: served token dead at Allegro: {me.text[:200]}")
                else:
                    self.stats.expected_errors["token: replaced by a concurrent refresh"] += 1

    async def refresh(self, clients: Clients) -> None:
        chosen = self.pick()
        if chosen is None:
            return
        account_id, known = chosen
        body = {"rejected_token": known.last_token} if known.last_token and self.rng.random() < 0.7 else None
        response = await self.as_service(
            clients.service, "refresh", "POST", account_id, "/token/refresh", json=body
        )
        if response is not None and response.status_code == 200:
            known.last_token = response.json()["access_token"]

    async def list_(self, clients: Clients) -> None:
        owner = f"owner-{self.rng.randint(1, OWNERS)}"
        query = self.rng.choice(["", "?status=active", "?limit=5", "?status=relogin_required"])
        await self.call(
            clients.service,
            "list",
            "GET",
            f"/accounts{query}",
            ok=(200,),
            headers=self.target.as_owner(owner),
        )

    async def get(self, clients: Clients) -> None:
        chosen = self.pick()
        if chosen is None:
            return
        account_id, _ = chosen
        response = await self.as_owner(clients.service, "get", "GET", account_id, ok=(200,))
        if response is not None and response.status_code == 200 and response.json()["status"] != "active":
            self.stats.unexpected_errors[f"get: status {response.json()['relogin_reason']}"] += 1

    async def delete(self, clients: Clients) -> None:
        if len(self.accounts) - len(self.deleted) <= self.keep_accounts:
            return
        chosen = self.pick()
        if chosen is None:
            return
        account_id, _ = chosen
        if account_id in self.deleting:
            return
        self.deleting.add(account_id)
        try:
            response = await self.as_owner(clients.service, "delete", "DELETE", account_id, ok=(204,))
        finally:
            self.deleting.discard(account_id)
        if response is not None and response.status_code in (204, 404):
            self.deleted.add(account_id)

    # -- the run ----------------------------------------------------------------------------------

    async def worker(self, deadline: float) -> None:
        ops = list(WEIGHTS)
        weights = list(WEIGHTS.values())
        async with clients(self.target) as both:
            while time.monotonic() < deadline:
                op = self.rng.choices(ops, weights)[0]
                if op == "relogin":
                    chosen = self.pick()
                    if chosen is not None:
                        await self.link(both, chosen[0])
                else:
                    await {
                        "token": self.token,
                        "refresh": self.refresh,
                        "list": self.list_,
                        "get": self.get,
                        "link": self.link,
                        "delete": self.delete,
                    }[op](both)
