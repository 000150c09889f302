"""A refresh that reached Allegro but could not be stored is visible to every other replica.

The case an independent chaos run found: replica B refreshes an account at Allegro (which kills the
old access token at once), PostgreSQL goes away before B can commit the new pair, and B holds it in
memory. Replica A, once the database is back, read the old row and handed out its access token, dead
at Allegro, until B managed to store its pair. Here B keeps its database cut off (a proxy) for longer
than A, which is how B's writer came to be late in that run, so the window stays open deterministically.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from allegro_link.settings import Settings
from tests.reliability.processes import serve_process
from tests.reliability.proxy import CuttableProxy, cuttable_proxy
from tests.reliability.stack import Stack, stack
from tests.support.factories import bearer
from tests.support.keys import new_api_key
from tests.support.tokens import add_fault, expire_access, refresh_calls, stored_pair, works_at_allegro

pytestmark = pytest.mark.slow

REFRESH_DEADLINE = 4.5
ALLEGRO_DELAY = 4.0  # within the deadline: B gets Allegro's answer, after the database has gone
GRACE = 60.0  # the fake's refresh token reuse grace, as Allegro's


@pytest.fixture
async def deployment() -> AsyncIterator[Stack]:
    async with stack(
        "unstored", db_connect_timeout_seconds=2.0, token_refresh_deadline_seconds=REFRESH_DEADLINE
    ) as found:
        yield found


async def _token(base_url: str, account_id: str, key: str, **params: int) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        return await http.get(f"/accounts/{account_id}/token", params=params, headers=bearer(key))


async def _until_refresh_calls(deployment: Stack, count: int) -> None:
    deadline = time.monotonic() + 15
    while await refresh_calls(deployment.harness) < count:
        assert time.monotonic() < deadline, "the refresh never reached Allegro"
        await asyncio.sleep(0.02)


async def _proxied_settings(deployment: Stack, proxy: CuttableProxy) -> Settings:
    """The deployment's settings with the database reached through `proxy`."""
    url = make_url(deployment.settings.database_url.get_secret_value())
    proxied = url.set(host="127.0.0.1", port=proxy.port, query={}).render_as_string(hide_password=False)
    return deployment.settings.model_copy(update={"database_url": SecretStr(proxied)})


async def _postgres_socket(deployment: Stack) -> str:
    found = await asyncio.to_thread(lambda: list(Path(deployment.postgres.socket_dir).glob(".s.PGSQL.*")))
    (socket,) = (path for path in found if path.suffix != ".lock")
    return str(socket)


async def _never_the_killed_token(
    response: httpx.Response, killed: str | None, fake: httpx.AsyncClient
) -> None:
    if response.status_code == 200:
        served = response.json()["access_token"]
        handed_out_killed = served == killed
        assert not handed_out_killed, "a replica handed out the access token Allegro killed"
        assert await works_at_allegro(fake, served)
    else:
        assert response.status_code == 503, response.text
        assert "retry-after" in response.headers
        assert "access_token" not in response.text


async def _each_refreshes_with_its_stored_token(
    deployment: Stack, ids: list[str], key: str, base_url: str
) -> None:
    """Past Allegro's grace, every account refreshes with the refresh token it has stored: none of
    them holds one that a refresh whose pair was then lost has already used."""
    fake = deployment.harness.fake
    await fake.post("/__fake__/clock", json={"advance_seconds": GRACE + 1})
    await expire_access(deployment.settings)
    calls = await refresh_calls(deployment.harness)
    for account_id in ids:
        refreshed = await _token(base_url, account_id, key)
        assert refreshed.status_code == 200, refreshed.text
        stored = await stored_pair(deployment.settings, account_id)
        assert stored.status == "active"
        assert refreshed.json()["access_token"] == stored.access_token
        assert await works_at_allegro(fake, stored.access_token)
    assert await refresh_calls(deployment.harness) == calls + len(ids)


class TestRefreshNotYetStored:
    async def test_no_replica_hands_out_the_access_token_a_held_refresh_killed(
        self, deployment: Stack
    ) -> None:
        fake = deployment.harness.fake
        ids = []
        for login in ("Konto0", "Konto1"):
            linked = await deployment.harness.link("owner-a", login)
            assert linked.status_code == 200, linked.text
            ids.append(linked.json()["account"]["id"])
        account = ids[0]
        key = await new_api_key(deployment.settings, "tokens:read")
        replica_a = str(deployment.harness.service.base_url)

        async with (
            cuttable_proxy(await _postgres_socket(deployment)) as proxy,
            serve_process(await _proxied_settings(deployment, proxy)) as replica_b,
        ):
            for base_url in (replica_a, replica_b.url):  # warm both API key caches
                for account_id in ids:
                    assert (await _token(base_url, account_id, key)).status_code == 200

            # Valid for half an hour: A serves it as it is, B (asking for an hour) refreshes.
            await expire_access(deployment.settings, account, seconds_left=1800)
            killed = (await stored_pair(deployment.settings, account)).access_token
            await add_fault(fake, kind="delay", delay_seconds=ALLEGRO_DELAY)
            b_refresh = asyncio.create_task(_token(replica_b.url, account, key, min_valid_for=3600))
            await _until_refresh_calls(deployment, 1)
            # B committed its marker before calling Allegro: the marker is at most this old.
            marked_by = time.monotonic()

            stop_started = time.monotonic()
            await deployment.stop_database()
            assert time.monotonic() - stop_started < ALLEGRO_DELAY - 0.5, (
                "the stop was too slow for this test"
            )
            proxy.cut()  # B stays without its database until A's reads below are done
            await _never_the_killed_token(await _token(replica_a, account, key), killed, fake)

            held = await b_refresh  # Allegro rotated; B could not commit and holds the pair
            assert held.status_code == 503, held.status_code
            assert held.json()["code"] == "database_unavailable"
            assert not await works_at_allegro(fake, killed)

            await deployment.start_database()
            await deployment.wait_ready(replica_a)
            # B's refresh is older than the deadline now: were it still running, it would have given up
            # on Allegro by now, so a marker without a stored pair means "rotated, maybe, and lost".
            await asyncio.sleep(max(0.0, marked_by + REFRESH_DEADLINE + 0.2 - time.monotonic()))
            for _ in range(3):
                await _never_the_killed_token(await _token(replica_a, account, key), killed, fake)

            proxy.heal()
            await deployment.wait_ready(replica_b.url)
            for base_url in (replica_b.url, replica_a):  # B's held pair lost to A's refresh: dropped
                again = await _token(base_url, account, key)
                assert again.status_code == 200, again.text
                stored = await stored_pair(deployment.settings, account)
                assert again.json()["access_token"] == stored.access_token
                assert await works_at_allegro(fake, stored.access_token)

        await _each_refreshes_with_its_stored_token(deployment, ids, key, replica_a)
