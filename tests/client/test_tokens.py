"""Tokens from the service: fetched once, held in memory while they last, shared by concurrent callers."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from allegro_link_client import AllegroLink, AllegroLinkUnavailable, AsyncAllegroLink

from tests.client.conftest import Seller
from tests.client.support import ALLEGRO_JSON, CallLog, FakeControls
from tests.support.accounts import update_account
from tests.support.link import LinkHarness


class TestToken:
    def test_token_is_fetched_once_and_then_served_from_memory(
        self, link: AllegroLink, seller: Seller, calls: CallLog
    ) -> None:
        first = link.token(seller.account_id)
        again = link.token(uuid.UUID(seller.account_id), min_valid_for=60)

        assert first.login == seller.login
        assert first.account_id == uuid.UUID(seller.account_id)
        assert first.valid_for() > 300
        assert again is first
        assert calls.token_fetches() == 1

    async def test_a_held_token_too_short_for_min_valid_for_is_fetched_again(
        self, async_link: AsyncAllegroLink, seller: Seller, harness: LinkHarness, calls: CallLog
    ) -> None:
        # The service holds a token with ten minutes left: enough for 300 s, not for 900 s.
        expires = datetime.now(UTC) + timedelta(minutes=10)
        await update_account(harness.settings, seller.account_id, access_token_expires_at=expires)
        short = await async_link.token(seller.account_id, min_valid_for=300)

        longer = await async_link.token(seller.account_id, min_valid_for=900)

        assert short.valid_for() < 900
        assert longer.access_token != short.access_token
        assert longer.valid_for() > 900
        assert calls.token_fetches() == 2

    def test_refresh_without_a_rejected_token_always_asks_the_service(
        self, link: AllegroLink, seller: Seller, calls: CallLog, fake: FakeControls
    ) -> None:
        held = link.token(seller.account_id)

        forced = link.refresh(seller.account_id)

        assert forced.access_token != held.access_token
        assert calls.refreshes() == [{}]
        assert fake.refreshes() == 1
        assert link.token(seller.account_id) is forced  # the new one is held from now on

    def test_reporting_a_token_already_replaced_costs_no_call(
        self, link: AllegroLink, seller: Seller, calls: CallLog
    ) -> None:
        old = link.token(seller.account_id)
        new = link.refresh(seller.account_id, rejected_token=old)

        # A second caller that was refused the same old token gets the new one from memory.
        again = link.refresh(seller.account_id, rejected_token=old.access_token)

        assert again is new
        assert calls.refreshes() == [{"rejected_token": old.access_token}]


class TestConcurrency:
    async def test_a_hundred_concurrent_requests_through_one_async_client_cause_one_token_fetch(
        self, async_link: AsyncAllegroLink, seller: Seller, fake_url: str, calls: CallLog
    ) -> None:
        async with httpx.AsyncClient(
            base_url=fake_url, auth=async_link.auth(seller.account_id), timeout=30
        ) as allegro:
            responses = await asyncio.gather(*(allegro.get("/me", headers=ALLEGRO_JSON) for _ in range(100)))

        assert [r.status_code for r in responses] == [200] * 100
        assert {r.json()["login"] for r in responses} == {seller.login}
        assert calls.token_fetches() == 1

    def test_threads_sharing_one_link_cause_one_token_fetch(
        self, link: AllegroLink, seller: Seller, fake_url: str, calls: CallLog
    ) -> None:
        with (
            httpx.Client(base_url=fake_url, auth=link.auth(seller.account_id), timeout=30) as allegro,
            ThreadPoolExecutor(max_workers=16) as pool,
        ):
            statuses = list(
                pool.map(lambda _: allegro.get("/me", headers=ALLEGRO_JSON).status_code, range(32))
            )

        assert statuses == [200] * 32
        assert calls.token_fetches() == 1

    async def test_a_sync_links_auth_works_with_an_async_client_too(
        self, link: AllegroLink, seller: Seller, fake_url: str, calls: CallLog
    ) -> None:
        async with httpx.AsyncClient(
            base_url=fake_url, auth=link.auth(seller.account_id), timeout=30
        ) as allegro:
            responses = await asyncio.gather(*(allegro.get("/me", headers=ALLEGRO_JSON) for _ in range(10)))

        assert [r.status_code for r in responses] == [200] * 10
        assert calls.token_fetches() == 1


class TestSecrecy:
    def test_neither_the_token_nor_the_api_key_is_ever_shown(
        self, link: AllegroLink, seller: Seller, api_key: str
    ) -> None:
        token = link.token(seller.account_id)

        shown = [repr(token), str(token), f"{token}", repr(link), repr(link.auth(seller.account_id))]

        assert all(token.access_token not in text and api_key not in text for text in shown)
        assert seller.login in repr(token)  # the rest stays visible for debugging


def a_token(request: httpx.Request) -> httpx.Response:
    account_id = request.url.path.split("/")[2]
    expires_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {
        "account_id": account_id,
        "allegro_user_id": "1",
        "login": "x",
        "access_token": "t",
        "expires_at": expires_at,
    }
    return httpx.Response(200, json={**body, "token_type": "bearer", "scope": None})


class TestWaitingForAnotherFetch:
    """A caller queued behind another caller's fetch keeps to its own deadline (the service is held
    back by a transport that answers only when the test says so)."""

    def test_a_thread_waiting_for_another_fetch_gives_up_at_its_deadline(self) -> None:
        account, arrived, release, seen = uuid.uuid4(), threading.Event(), threading.Event(), []

        def held_back(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            arrived.set()
            release.wait(30)
            return a_token(request)

        with (
            AllegroLink(
                "http://link.test", api_key="k", deadline=0.5, transport=httpx.MockTransport(held_back)
            ) as link,
            ThreadPoolExecutor(max_workers=1) as pool,
        ):
            first = pool.submit(link.token, account)
            arrived.wait(30)
            with pytest.raises(AllegroLinkUnavailable) as raised:
                link.token(account)
            release.set()

            assert first.result().account_id == account
        assert raised.value.code == "deadline_exceeded"
        assert len(seen) == 1

    async def test_a_task_waiting_for_another_fetch_gives_up_at_its_deadline(self) -> None:
        account, arrived, release, seen = uuid.uuid4(), asyncio.Event(), asyncio.Event(), []

        async def held_back(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            arrived.set()
            await release.wait()
            return a_token(request)

        async with AsyncAllegroLink(
            "http://link.test", api_key="k", deadline=0.5, transport=httpx.MockTransport(held_back)
        ) as link:
            first = asyncio.create_task(link.token(account))
            await arrived.wait()
            with pytest.raises(AllegroLinkUnavailable) as raised:
                # The outer timeout only keeps a broken client from hanging the suite.
                await asyncio.wait_for(link.token(account), 30)
            release.set()

            assert (await first).account_id == account
        assert raised.value.code == "deadline_exceeded"
        assert len(seen) == 1
