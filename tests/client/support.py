"""Helpers for the client's tests: a transport that records what reaches allegro-link, and the fake
Allegro's test controls (`/__fake__`) as plain calls."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

ALLEGRO_JSON = {"Accept": "application/vnd.allegro.public.v1+json"}


@dataclass
class CallLog:
    """Every request a link sent to allegro-link, including those whose connection failed."""

    requests: list[httpx.Request] = field(default_factory=list)

    def count(self, method: str, path_end: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path.endswith(path_end))

    def token_fetches(self) -> int:
        return self.count("GET", "/token")

    def refreshes(self) -> list[dict[str, Any]]:
        """The bodies of the refresh calls ({} for a forced refresh without a body)."""
        return [
            json.loads(r.content) if r.content else {}
            for r in self.requests
            if r.method == "POST" and r.url.path.endswith("/token/refresh")
        ]


class CountingTransport(httpx.BaseTransport):
    """Real HTTP (httpx's own transport), with every request written down first."""

    def __init__(self, log: CallLog) -> None:
        self._log = log
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._log.requests.append(request)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class AsyncCountingTransport(httpx.AsyncBaseTransport):
    def __init__(self, log: CallLog) -> None:
        self._log = log
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._log.requests.append(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class FakeControls:
    """The fake Allegro's `/__fake__` controls. Blocking calls to a server in another thread, so they
    are fine from async tests too."""

    def __init__(self, fake_url: str) -> None:
        self.url = fake_url

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/__fake__{path}", json=body, timeout=10)
        assert response.is_success, response.text
        result: dict[str, Any] = response.json()
        return result

    def expire_access_tokens(self, login: str) -> None:
        """The user's current access tokens expire now: Allegro answers 401 to them."""
        self._post(f"/users/{login}/expire", {"what": "access"})

    def revoke(self, login: str) -> None:
        """The user removes the app at Allegro: refreshes get 401, the account needs a re-login."""
        self._post(f"/users/{login}/revoke", {})

    def fault(self, endpoint: str, status: int, count: int, retry_after: int | None = None) -> None:
        body: dict[str, Any] = {"endpoint": endpoint, "kind": "status", "status": status, "count": count}
        if retry_after is not None:
            body["retry_after"] = retry_after
        self._post("/faults", body)

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/__fake__/stats", timeout=10)
        result: dict[str, Any] = response.json()
        return result

    def refreshes(self) -> int:
        count: int = self.stats()["token_calls"]["refresh_token"]
        return count

    def me_calls(self) -> int:
        count: int = self.stats()["me_calls"]
        return count
