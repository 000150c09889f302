"""PostgreSQL stopped and started again while requests and refreshes are in flight.

Requests fail fast with 503 problem bodies, /readyz follows the database, the service recovers without
a restart, and no account is left with a lost or mismatched token pair: every stored access token works
at Allegro afterwards, and no refresh is repeated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.reliability.stack import Stack, stack
from tests.support.factories import ALLOWED_RETURN, bearer, owner_token
from tests.support.keys import new_api_key
from tests.support.tokens import (
    PATIENT_WAITS,
    Linked,
    add_fault,
    expire_access,
    refresh_calls,
    works_at_allegro,
)
from tests.support.waiting import until

# A stopped database refuses at once (its socket is gone), so requests fail fast whatever the connect
# timeout; a running one, on a loaded machine, took more than 2 s to accept a connection.
CONNECT_TIMEOUT = 10.0
FAST = 3.5  # "fail fast": a stopped database costs no wait, and this machine a margin
ACCOUNTS = 3

pytestmark = pytest.mark.slow


@pytest.fixture
async def outage() -> AsyncIterator[Stack]:
    # The fake holds each refresh until the test has taken the database away (and back).
    async with stack("outage", db_connect_timeout_seconds=CONNECT_TIMEOUT, **PATIENT_WAITS) as found:
        yield found


async def _link_accounts(outage: Stack) -> list[Linked]:
    ids = []
    for index in range(ACCOUNTS):
        response = await outage.harness.link("owner-a", f"Konto{index}")
        assert response.status_code == 200, response.text
        ids.append(response.json()["account"]["id"])
    key = await new_api_key(outage.settings, "tokens:read")
    accounts = [Linked(outage.harness, account_id, key) for account_id in ids]
    for account in accounts:  # warm the API key cache, as a running service has
        assert (await account.token()).status_code == 200
    return accounts


async def _refreshes_held_at_allegro(
    outage: Stack,
) -> tuple[list[Linked], list[asyncio.Task[httpx.Response]]]:
    """Linked accounts whose refreshes are under way, each held at Allegro (the fake); the requests."""
    accounts = await _link_accounts(outage)
    await expire_access(outage.settings)
    await add_fault(outage.harness.fake, kind="hold", count=ACCOUNTS)
    in_flight = [asyncio.create_task(account.token()) for account in accounts]
    await _until_allegro_holds_every_refresh(outage)
    return accounts, in_flight


async def _until_allegro_holds_every_refresh(outage: Stack) -> None:
    """Until each refresh has reached the fake, which holds it: each has then committed its marker and
    holds its row lock, so the database going away from here on is an outage while Allegro answers.

    Not a fixed sleep: on a loaded machine a request took over 0.3 s to get there, the database went
    away before it had its lock, and it failed with 503 instead of being stored later.
    """

    async def all_held() -> bool:
        return await refresh_calls(outage.harness) == ACCOUNTS  # the fake counts a call when it arrives

    await until(all_held, within=60, what="every refresh to reach Allegro")


async def _allegro_answers(outage: Stack) -> None:
    assert (await outage.harness.fake.post("/__fake__/faults/release")).status_code == 204


def _assert_503_problem(response: httpx.Response, elapsed: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] in ("database_unavailable", "not_ready")
    assert "retry-after" in response.headers
    assert "access_token" not in response.text
    assert elapsed < FAST, f"took {elapsed:.2f}s"


async def _timed(request: asyncio.Future[httpx.Response] | object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request  # type: ignore[misc]
    return response, time.monotonic() - started


async def _until_stored(accounts: list[Linked], *, version: int) -> None:
    """Until every account's stored pair has `version`: the pairs held in memory are written by the
    service itself, without any request."""

    async def all_stored() -> bool:
        return all([(await account.stored()).version == version for account in accounts])

    await until(all_stored, within=10, what=f"every pair to be stored as version {version}")


async def _consistent(accounts: list[Linked], *, version: int) -> None:
    for account in accounts:
        pair = await account.stored()
        assert pair.status == "active"
        assert pair.version == version, account.account_id
        assert await works_at_allegro(account.harness.fake, pair.access_token), account.account_id


class TestDatabaseOutage:
    async def test_refreshes_answered_while_the_database_is_down_are_stored_once_it_is_back(
        self, outage: Stack
    ) -> None:
        accounts, in_flight = await _refreshes_held_at_allegro(outage)
        service = outage.harness.service
        await outage.stop_database()

        # While the database is down: fast 503 problems everywhere, /readyz included.
        owner = bearer(owner_token("owner-a"))
        probes = [
            service.get("/accounts", headers=owner),
            service.get(f"/accounts/{accounts[0].account_id}", headers=owner),
            service.post("/accounts/authorize", json={"return_to": ALLOWED_RETURN}, headers=owner),
            service.get("/readyz"),
        ]
        # This one joins the refresh in flight for the account: it is answered with that refresh.
        joined = asyncio.create_task(accounts[0].token())
        for response, elapsed in await asyncio.gather(*(_timed(probe) for probe in probes)):
            _assert_503_problem(response, elapsed)
        assert (await service.get("/healthz")).status_code == 200

        # Allegro answers (it rotated every account) but nothing can be committed: 503, never a token
        # that is not stored.
        await _allegro_answers(outage)
        for response in await asyncio.gather(*in_flight, joined):
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "database_unavailable"
            assert "access_token" not in response.text

        await outage.start_database()
        ready_after = await outage.wait_ready(str(service.base_url))
        assert ready_after < 10

        await _until_stored(accounts, version=2)
        await _consistent(accounts, version=2)
        assert await refresh_calls(outage.harness) == ACCOUNTS  # stored, not refreshed again

        for account in accounts:
            served = await account.token()
            assert served.status_code == 200
            assert served.json()["access_token"] == (await account.stored()).access_token
        assert await refresh_calls(outage.harness) == ACCOUNTS

    async def test_a_database_back_before_allegro_answers_commits_on_retry(self, outage: Stack) -> None:
        accounts, in_flight = await _refreshes_held_at_allegro(outage)
        # A quick restart: the refreshes' connections (and row locks) are gone, the database is back.
        await outage.stop_database()
        await outage.start_database()
        await _allegro_answers(outage)
        responses = await asyncio.gather(*in_flight)
        # The commit on the dead connection fails, and its retry on a new one succeeds.
        assert [r.status_code for r in responses] == [200] * ACCOUNTS, [r.text for r in responses]
        for account, response in zip(accounts, responses, strict=True):
            assert response.json()["access_token"] == (await account.stored()).access_token
        await outage.wait_ready(str(outage.harness.service.base_url))
        await _until_stored(accounts, version=2)
        await _consistent(accounts, version=2)
        assert await refresh_calls(outage.harness) == ACCOUNTS
