"""`events()`: following the feed's `next_cursor`.

These run against `httpx.MockTransport` answering as docs/events.md says, which pins down exactly which
pages are asked for; test_events_live.py reads the feed of the running service.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from allegro_link_client import AccountNotFound, AllegroLink, AllegroLinkError, AsyncAllegroLink

ACCOUNT = str(uuid.uuid4())


def event(number: int) -> dict[str, Any]:
    return {
        "id": f"ev-{number}",
        "type": "account.linked",
        "occurred_at": "2026-12-01T10:00:00+00:00",
        "account": {
            "id": ACCOUNT,
            "owner_id": "owner-a",
            "allegro_user_id": "123",
            "login": "Sprzedawca1",
            "status": "active",
            "relogin_reason": None,
        },
        "data": {},
    }


class Feed:
    """The feed as the contract describes it: pages by cursor, `next_cursor` always present."""

    def __init__(self, pages: dict[str | None, tuple[list[int], str]]) -> None:
        self.pages = pages
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        numbers, next_cursor = self.pages[request.url.params.get("after")]
        return httpx.Response(200, json={"items": [event(n) for n in numbers], "next_cursor": next_cursor})

    def asked_after(self) -> list[str | None]:
        return [r.url.params.get("after") for r in self.requests]


def three_pages() -> Feed:
    return Feed({None: ([1, 2], "c1"), "c1": ([3], "c2"), "c2": ([], "c2")})


def sync_link(handler: Callable[[httpx.Request], httpx.Response], deadline: float = 10) -> AllegroLink:
    return AllegroLink(
        "http://link.test", api_key="k", deadline=deadline, transport=httpx.MockTransport(handler)
    )


class TestFollowingTheFeed:
    def test_events_follow_next_cursor_page_after_page(self) -> None:
        feed = three_pages()

        with sync_link(feed) as link:
            events = list(link.events(wait=5, stop_when_idle=True))

        assert [e.id for e in events] == ["ev-1", "ev-2", "ev-3"]
        assert feed.asked_after() == [None, "c1", "c2"]
        assert events[0].account.id == uuid.UUID(ACCOUNT)

    async def test_the_async_feed_does_the_same(self) -> None:
        feed = three_pages()

        async with AsyncAllegroLink(
            "http://link.test", api_key="k", transport=httpx.MockTransport(feed)
        ) as link:
            events = [e async for e in link.events(after=None, wait=5, stop_when_idle=True)]

        assert [e.id for e in events] == ["ev-1", "ev-2", "ev-3"]
        assert feed.asked_after() == [None, "c1", "c2"]

    def test_following_goes_on_after_an_empty_page(self) -> None:
        feed = Feed({"c0": ([], "c0b"), "c0b": ([], "c0c"), "c0c": ([7], "c1")})

        with sync_link(feed) as link:
            first = next(link.events(after="c0", wait=30))

        assert first.id == "ev-7"
        assert feed.asked_after() == ["c0", "c0b", "c0c"]

    def test_the_filters_and_the_wait_are_sent(self) -> None:
        feed = three_pages()
        account = uuid.uuid4()

        with sync_link(feed) as link:
            next(
                link.events(
                    wait=30,
                    limit=2,
                    types=["account.linked", "account.deleted"],
                    owner_id="owner-a",
                    account_id=account,
                )
            )

        params = feed.requests[0].url.params
        assert params["wait"] == "30"
        assert params["limit"] == "2"
        assert params.get_list("type") == ["account.linked", "account.deleted"]
        assert (params["owner_id"], params["account_id"]) == ("owner-a", str(account))
        assert "after" not in params

    def test_a_long_poll_is_given_its_wait_on_top_of_the_deadline(self) -> None:
        feed = three_pages()

        with sync_link(feed, deadline=1) as link:
            next(link.events(wait=25))

        assert feed.requests[0].extensions["timeout"]["read"] > 25

    def test_a_feed_answering_404_is_not_mistaken_for_a_missing_account(self) -> None:
        def not_served(request: httpx.Request) -> httpx.Response:
            body = {
                "type": "urn:x",
                "title": "Not found",
                "status": 404,
                "detail": "Not found",
                "code": "not_found",
            }
            return httpx.Response(404, json=body, headers={"Content-Type": "application/problem+json"})

        with sync_link(not_served) as link, pytest.raises(AllegroLinkError) as raised:
            next(link.events(wait=1))

        assert not isinstance(raised.value, AccountNotFound)
        assert (raised.value.code, raised.value.status) == ("not_found", 404)

    def test_following_without_waiting_is_refused(self) -> None:
        with sync_link(three_pages()) as link, pytest.raises(ValueError, match="wait"):
            link.events(wait=0)


class TestResuming:
    def test_the_cursor_moves_only_once_a_whole_page_has_been_handed_out(self) -> None:
        feed = three_pages()

        with sync_link(feed) as link:
            events = link.events(after=None, wait=5, stop_when_idle=True)
            seen = []
            for item in events:
                seen.append((item.id, events.cursor))

        # Resuming from the cursor saved after ev-1 would repeat ev-2, never skip it.
        assert seen == [("ev-1", None), ("ev-2", "c1"), ("ev-3", "c2")]
        assert events.cursor == "c2"

    def test_a_consumer_resuming_from_the_saved_cursor_sees_each_event_once(self) -> None:
        feed = three_pages()

        with sync_link(feed) as link:
            events = link.events(wait=5)
            first_two = [next(events).id, next(events).id]
            saved = events.cursor
            rest = [e.id for e in link.events(after=saved, wait=5, stop_when_idle=True)]

        assert first_two + rest == ["ev-1", "ev-2", "ev-3"]
