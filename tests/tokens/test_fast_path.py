"""The token request's fast path (tokens/fast_path.py) answers exactly as the documented route would.

Each test sends the same request twice: once in the usual shape, which the fast path takes, and once
with the account id in capitals, which it leaves to the route (FastAPI accepts any UUID spelling). A
spy on the fast path proves which one answered, so that the comparisons cannot pass by both requests
having gone the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from allegro_link.accounts.models import AccountStatus, ReloginReason
from allegro_link.db import utcnow
from allegro_link.tokens import fast_path
from tests.support.accounts import update_account
from tests.support.factories import bearer, owner_token
from tests.support.keys import new_api_key
from tests.support.tokens import Linked

# Headers that belong to the answer, not to the connection or the request (its id).
COMPARED_HEADERS = ("content-type", "cache-control", "pragma", "retry-after", "www-authenticate")


@pytest.fixture
def served_fast(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The account ids of the requests the fast path served (the service runs in a thread here)."""
    served: list[str] = []
    serve: Callable[..., Awaitable[bytes]] = fast_path._serve

    async def spy(scope: Any, account_id: Any, *args: Any) -> bytes:
        served.append(str(account_id))
        return await serve(scope, account_id, *args)

    monkeypatch.setattr(fast_path, "_serve", spy)
    return served


async def _get(linked: Linked, account_id: str, headers: dict[str, str], query: str = "") -> httpx.Response:
    return await linked.harness.service.get(f"/accounts/{account_id}/token{query}", headers=headers)


def _answer(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    headers = {name: response.headers[name] for name in COMPARED_HEADERS if name in response.headers}
    return response.status_code, response.json(), headers


async def _fast_and_route(
    linked: Linked, served: list[str], account_id: str, headers: dict[str, str], query: str = ""
) -> tuple[httpx.Response, httpx.Response]:
    fast = await _get(linked, account_id, headers, query)
    assert served == [account_id], "the usual shape is the fast path's"
    routed = await _get(linked, account_id.upper(), headers, query)
    assert served == [account_id], "capitals are the route's"
    served.clear()
    return fast, routed


class TestSameAnswers:
    async def test_a_token(self, linked: Linked, served_fast: list[str]) -> None:
        fast, routed = await _fast_and_route(linked, served_fast, linked.account_id, bearer(linked.key))
        assert fast.status_code == 200
        assert _answer(fast) == _answer(routed)
        assert fast.headers["cache-control"] == "no-store"

    async def test_a_token_valid_for_longer(self, linked: Linked, served_fast: list[str]) -> None:
        fast, routed = await _fast_and_route(
            linked, served_fast, linked.account_id, bearer(linked.key), "?min_valid_for=3600"
        )
        assert fast.status_code == 200
        assert _answer(fast) == _answer(routed)

    async def test_an_unknown_account(self, linked: Linked, served_fast: list[str]) -> None:
        unknown = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
        fast, routed = await _fast_and_route(linked, served_fast, unknown, bearer(linked.key))
        assert fast.status_code == 404
        assert _answer(fast) == _answer(routed)

    async def test_an_unknown_api_key(self, linked: Linked, served_fast: list[str]) -> None:
        headers = bearer("alk_not-a-key-we-made")
        fast, routed = await _fast_and_route(linked, served_fast, linked.account_id, headers)
        assert fast.status_code == 401
        assert _answer(fast) == _answer(routed)

    async def test_a_key_without_the_tokens_scope(self, linked: Linked, served_fast: list[str]) -> None:
        headers = bearer(await new_api_key(linked.settings, "accounts:read"))
        fast, routed = await _fast_and_route(linked, served_fast, linked.account_id, headers)
        assert fast.status_code == 403
        assert _answer(fast) == _answer(routed)

    async def test_an_account_to_log_in_again(self, linked: Linked, served_fast: list[str]) -> None:
        await update_account(
            linked.settings,
            linked.account_id,
            status=AccountStatus.RELOGIN_REQUIRED,
            relogin_reason=ReloginReason.GRANT_REVOKED,
            status_changed_at=utcnow(),
        )
        fast, routed = await _fast_and_route(linked, served_fast, linked.account_id, bearer(linked.key))
        assert fast.status_code == 409
        assert _answer(fast) == _answer(routed)


class TestLeftToTheRoute:
    @pytest.mark.parametrize(
        ("query", "status"),
        [
            ("?min_valid_for=3601", 422),
            ("?min_valid_for=-1", 422),
            ("?min_valid_for=abc", 422),
            ("?min_valid_for=60&other=1", 200),
            ("?min_valid_for=60&min_valid_for=120", 200),
        ],
    )
    async def test_queries_it_does_not_parse(
        self, linked: Linked, served_fast: list[str], query: str, status: int
    ) -> None:
        response = await _get(linked, linked.account_id, bearer(linked.key), query)
        assert response.status_code == status, response.text
        assert served_fast == []

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "BEARER alk_x"},
            bearer(owner_token("owner-a")),
        ],
        ids=["none", "basic", "scheme in capitals", "owner"],
    )
    async def test_credentials_that_are_not_an_api_key(
        self, linked: Linked, served_fast: list[str], headers: dict[str, str]
    ) -> None:
        response = await _get(linked, linked.account_id, headers)
        assert response.status_code in (401, 403), response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert served_fast == []

    async def test_other_methods(self, linked: Linked, served_fast: list[str]) -> None:
        response = await linked.harness.service.head(
            f"/accounts/{linked.account_id}/token", headers=bearer(linked.key)
        )
        assert response.status_code == 405
        assert served_fast == []


async def test_its_requests_are_counted_under_the_route(linked: Linked, served_fast: list[str]) -> None:
    def served_count(metrics: str) -> float:
        label = 'method="GET",route="/accounts/{account_id}/token",status="200"'
        lines = [
            line for line in metrics.splitlines() if line.startswith("allegro_link_http_requests_total{")
        ]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if label in line)

    before = served_count((await linked.harness.service.get("/metrics")).text)
    assert (await linked.token()).status_code == 200
    after = served_count((await linked.harness.service.get("/metrics")).text)
    assert served_fast == [linked.account_id]
    assert after == before + 1
