"""GET /events: commit order, never a miss, never a repeat, filters, long-poll without holding the pool."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from allegro_link.accounts.events import append_events
from allegro_link.app import create_app
from allegro_link.settings import Settings
from tests.support.accounts import insert_account
from tests.support.events import loose_account, open_session, read_feed_to_end, relogin_events
from tests.support.factories import bearer, make_settings, owner_token
from tests.support.keys import new_api_key
from tests.support.live import lifespan


@pytest.fixture
async def key(settings: Settings) -> str:
    return await new_api_key(settings, "events:read")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class TestOrdering:
    async def test_an_event_that_commits_after_a_later_one_is_still_delivered(
        self, client: httpx.AsyncClient, settings: Settings, key: str
    ) -> None:
        async with open_session(settings) as held, open_session(settings) as quick:
            # `held` inserts first (the smaller id) and stays open while `quick` commits.
            (early,) = await append_events(held, relogin_events(1))
            (late,) = await append_events(quick, relogin_events(1))
            await quick.commit()
            seen, cursor = await read_feed_to_end(client, key, None, wait=10)
            assert [item["id"] for item in seen] == [str(late)]

            await held.commit()
        more, _ = await read_feed_to_end(client, key, cursor, wait=10)
        assert [item["id"] for item in more] == [str(early)]

    async def test_ten_thousand_events_paged_while_others_commit_none_missed_none_twice(
        self, client: httpx.AsyncClient, settings: Settings, key: str
    ) -> None:
        total, writers = 10_000, 8
        rng = random.Random(11)
        expected: set[str] = set()

        async def writer(share: int) -> None:
            async with open_session(settings) as session:
                left = share
                while left:
                    batch = min(left, rng.randint(1, 60))
                    expected.update(map(str, await append_events(session, relogin_events(batch))))
                    # Some transactions stay open while others (inserted later) commit first.
                    await asyncio.sleep(rng.choice((0, 0, 0.01, 0.05)))
                    await session.commit()
                    left -= batch

        seen: list[str] = []
        cursor: str | None = None

        async def reader(done: asyncio.Event) -> None:
            nonlocal cursor
            while True:
                finished = done.is_set()
                items, cursor = await read_feed_to_end(client, key, cursor, wait=0.2)
                seen.extend(item["id"] for item in items)
                if finished and not items and len(seen) >= total:
                    return

        done = asyncio.Event()
        reading = asyncio.create_task(reader(done))
        await asyncio.gather(*(writer(total // writers) for _ in range(writers)))
        done.set()
        await asyncio.wait_for(reading, 120)
        assert len(seen) == len(set(seen)), "an event was returned twice"
        assert set(seen) == expected
        assert len(seen) == total

    async def test_one_accounts_events_arrive_in_their_commit_order(
        self, client: httpx.AsyncClient, settings: Settings, key: str
    ) -> None:
        account = loose_account()
        appended = []
        for _ in range(5):
            async with open_session(settings) as session:
                appended += await append_events(session, relogin_events(1, account=account))
                await session.commit()
        seen, _ = await read_feed_to_end(client, key, None, wait=10, account_id=str(account.id))
        while len(seen) < 5:
            seen += (await read_feed_to_end(client, key, None, wait=2, account_id=str(account.id)))[0][
                len(seen) :
            ]
        assert [item["id"] for item in seen] == [str(event_id) for event_id in appended]


class TestPages:
    async def test_next_cursor_is_present_on_an_empty_page_and_goes_on_from_there(
        self, client: httpx.AsyncClient, key: str, settings: Settings
    ) -> None:
        response = await client.get("/events", headers=_auth(key))
        assert response.status_code == 200
        first = response.json()
        assert first["items"] == []
        assert first["next_cursor"]
        async with open_session(settings) as session:
            (event_id,) = await append_events(session, relogin_events(1))
            await session.commit()
        page, _ = await read_feed_to_end(client, key, first["next_cursor"], wait=10)
        assert [item["id"] for item in page] == [str(event_id)]

    async def test_filters_by_type_owner_and_account(
        self, client: httpx.AsyncClient, key: str, settings: Settings
    ) -> None:
        mine, theirs = loose_account("owner-a"), loose_account("owner-b")
        async with open_session(settings) as session:
            await append_events(session, relogin_events(2, account=mine) + relogin_events(3, account=theirs))
            await session.commit()
        everything, _ = await read_feed_to_end(client, key, None, wait=10)
        while len(everything) < 5:
            everything = (await read_feed_to_end(client, key, None, wait=1))[0]
        by_owner, _ = await read_feed_to_end(client, key, None, owner_id="owner-b")
        assert [e["account"]["owner_id"] for e in by_owner] == ["owner-b"] * 3
        by_account, _ = await read_feed_to_end(client, key, None, account_id=str(mine.id))
        assert len(by_account) == 2
        linked_only, cursor = await read_feed_to_end(client, key, None, type="account.linked")
        assert linked_only == []
        # The cursor moved past what the filter skipped: a later page starts after those events.
        assert (await read_feed_to_end(client, key, cursor))[0] == []

    async def test_an_event_has_the_contract_shape(
        self, client: httpx.AsyncClient, key: str, settings: Settings
    ) -> None:
        account = loose_account("owner-a")
        async with open_session(settings) as session:
            (event_id,) = await append_events(session, relogin_events(1, account=account))
            await session.commit()
        (event,), _ = await read_feed_to_end(client, key, None, wait=10)
        assert event == {
            "id": str(event_id),
            "type": "account.relogin_required",
            "occurred_at": event["occurred_at"],
            "account": {
                "id": str(account.id),
                "owner_id": "owner-a",
                "allegro_user_id": "123",
                "login": "Sprzedawca",
                "status": "relogin_required",
                "relogin_reason": "grant_revoked",
            },
            "data": {"reason": "grant_revoked"},
        }

    @pytest.mark.parametrize("cursor", ["garbage", "aDE6MTA", "ZjE6LTE"])  # junk, a history cursor, -1
    async def test_a_cursor_we_did_not_issue_is_a_400(
        self, client: httpx.AsyncClient, key: str, cursor: str
    ) -> None:
        response = await client.get("/events", params={"after": cursor}, headers=_auth(key))
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_cursor"

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"wait": 31}, {"type": "account.nope"}])
    async def test_out_of_range_parameters_are_422(
        self, client: httpx.AsyncClient, key: str, params: dict[str, str | int]
    ) -> None:
        response = await client.get("/events", params=params, headers=_auth(key))
        assert response.status_code == 422


class TestAccess:
    async def test_needs_the_events_read_scope(self, client: httpx.AsyncClient, settings: Settings) -> None:
        other = await new_api_key(settings, "accounts:read", "tokens:read")
        assert (await client.get("/events", headers=_auth(other))).status_code == 403
        assert (await client.get("/events", headers=bearer(owner_token("owner-a")))).status_code == 403
        assert (await client.get("/events")).status_code == 401


class TestLongPoll:
    @pytest.fixture
    async def small_pool_client(self, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(make_settings(database_url, db_pool_size=2, db_max_overflow=0))
        async with lifespan(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", timeout=60
            ) as http:
                yield http

    async def test_waiting_readers_hold_no_pooled_connection(
        self, small_pool_client: httpx.AsyncClient, settings: Settings, key: str
    ) -> None:
        account = await insert_account(settings, owner_id="owner-a")
        waiting = [
            asyncio.create_task(small_pool_client.get("/events", params={"wait": 20}, headers=_auth(key)))
            for _ in range(10)
        ]
        await asyncio.sleep(0.5)  # let them reach their wait (a pool of 2 would be gone if they held it)
        read = await small_pool_client.get(f"/accounts/{account.id}", headers=bearer(owner_token("owner-a")))
        assert read.status_code == 200
        assert not any(task.done() for task in waiting)

        async with open_session(settings) as session:
            (event_id,) = await append_events(session, relogin_events(1))
            await session.commit()
        for response in await asyncio.gather(*waiting):
            # Every waiter wakes with the event (the events written before by insert_account: none).
            assert [item["id"] for item in response.json()["items"]] == [str(event_id)]

    async def test_wait_zero_answers_at_once_with_an_empty_page(
        self, client: httpx.AsyncClient, key: str
    ) -> None:
        response = await client.get(
            "/events", params={"wait": 0, "account_id": str(uuid.uuid4())}, headers=_auth(key)
        )
        assert response.json()["items"] == []
