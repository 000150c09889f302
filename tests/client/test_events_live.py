"""`events()` against the running service: what the flows record reaches a client following the feed.

Events take their place in the feed (`seq`) just after they commit, from a sequencer woken by NOTIFY
(docs/events.md), so a `wait=0` read right after a change may not see it yet. Each test first waits for
the event it needs with a long poll (`in_feed`), which returns as soon as the event is numbered; then the
`wait=0` reads that follow are exact.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from allegro_link_client import AllegroLink, AsyncAllegroLink, Event, ReloginRequired

from tests.client.conftest import DEADLINE, Seller
from tests.client.support import FakeControls
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness

LINKED = "account.linked"
RELOGIN = "account.relogin_required"
# Long enough for the slowest machine to number an event; an absent event ends the read, not the run.
SETTLE_WAIT = 20


@pytest.fixture
async def api_key(harness: LinkHarness) -> str:
    return await new_api_key(harness.settings, "tokens:read", "accounts:read", "events:read")


@pytest.fixture
async def other_seller(harness: LinkHarness) -> Seller:
    response = await harness.link("owner-b", "Sprzedawca2")
    assert response.status_code == 200, response.text
    return Seller(account_id=response.json()["account"]["id"], login="Sprzedawca2")


def in_feed(link: AllegroLink, account_id: str, event_type: str) -> Event:
    """The account's first event of the type, waiting (one long poll at most) until it is numbered."""
    feed = link.events(wait=SETTLE_WAIT, stop_when_idle=True, types=[event_type], account_id=account_id)
    event = next(feed, None)
    assert event is not None, f"no {event_type} for {account_id} in the feed"
    return event


async def in_async_feed(link: AsyncAllegroLink, account_id: str, event_type: str) -> Event:
    feed = link.events(wait=SETTLE_WAIT, stop_when_idle=True, types=[event_type], account_id=account_id)
    event = await anext(feed, None)
    assert event is not None, f"no {event_type} for {account_id} in the feed"
    return event


def revoke_and_refresh(link: AllegroLink, fake: FakeControls, seller: Seller) -> None:
    """The seller removes the app at Allegro; the next refresh finds out and flags the account."""
    fake.revoke(seller.login)
    with pytest.raises(ReloginRequired) as raised:
        link.refresh(seller.account_id)
    assert raised.value.reason == "grant_revoked"


def summary(events: list[Event]) -> list[tuple[str, str]]:
    return [(event.type, str(event.account.id)) for event in events]


class TestTheFeedOfTheService:
    def test_a_linked_account_is_in_the_feed(self, link: AllegroLink, seller: Seller) -> None:
        in_feed(link, seller.account_id, LINKED)

        events = list(link.events(wait=0, stop_when_idle=True))

        assert summary(events) == [(LINKED, seller.account_id)]
        (linked,) = events
        assert (linked.account.login, linked.account.status) == (seller.login, "active")
        assert dict(linked.data) == {}

    def test_resuming_from_the_saved_cursor_gives_only_what_came_since(
        self, link: AllegroLink, seller: Seller, fake: FakeControls
    ) -> None:
        in_feed(link, seller.account_id, LINKED)
        feed = link.events(wait=0, stop_when_idle=True)
        before = list(feed)
        saved = feed.cursor
        assert saved is not None

        revoke_and_refresh(link, fake, seller)
        in_feed(link, seller.account_id, RELOGIN)
        resumed_feed = link.events(after=saved, wait=0, stop_when_idle=True)
        resumed = list(resumed_feed)

        assert summary(before) == [(LINKED, seller.account_id)]
        assert summary(resumed) == [(RELOGIN, seller.account_id)]
        assert dict(resumed[0].data) == {"reason": "grant_revoked"}
        assert (resumed[0].account.status, resumed[0].account.relogin_reason) == (
            "relogin_required",
            "grant_revoked",
        )
        assert {event.id for event in resumed}.isdisjoint(event.id for event in before)
        # And from where the resumed read ended: nothing more, nothing again.
        assert list(link.events(after=resumed_feed.cursor, wait=0, stop_when_idle=True)) == []

    def test_a_long_poll_started_before_the_event_returns_it(
        self, service_url: str, api_key: str, link: AllegroLink, seller: Seller, fake: FakeControls
    ) -> None:
        in_feed(link, seller.account_id, LINKED)
        feed = link.events(wait=0, stop_when_idle=True)
        list(feed)
        sent = threading.Event()

        def note_the_feed_request(request: httpx.Request) -> None:
            if request.url.path.endswith("/events"):
                sent.set()

        transport = httpx.HTTPTransport()
        with (
            AllegroLink(
                service_url,
                api_key=api_key,
                deadline=DEADLINE,
                transport=_Announcing(transport, note_the_feed_request),
            ) as waiting_link,
            ThreadPoolExecutor(max_workers=1) as pool,
        ):
            waiting = waiting_link.events(after=feed.cursor, wait=SETTLE_WAIT, stop_when_idle=True)
            arrived = pool.submit(next, waiting, None)
            assert sent.wait(DEADLINE), "the long poll was never sent"

            revoke_and_refresh(link, fake, seller)
            event = arrived.result(timeout=SETTLE_WAIT + DEADLINE)

        assert event is not None, "the long poll ended without the event"
        assert (event.type, str(event.account.id)) == (RELOGIN, seller.account_id)

    def test_the_type_owner_and_account_filters(
        self, link: AllegroLink, seller: Seller, other_seller: Seller, fake: FakeControls
    ) -> None:
        revoke_and_refresh(link, fake, seller)
        in_feed(link, other_seller.account_id, LINKED)
        in_feed(link, seller.account_id, RELOGIN)

        def read(
            types: Sequence[str] = (), owner_id: str | None = None, account_id: str | None = None
        ) -> list[tuple[str, str]]:
            feed = link.events(
                wait=0, stop_when_idle=True, types=types, owner_id=owner_id, account_id=account_id
            )
            return summary(list(feed))

        assert sorted(read()) == sorted(
            [(LINKED, seller.account_id), (LINKED, other_seller.account_id), (RELOGIN, seller.account_id)]
        )
        assert read(account_id=seller.account_id) == [
            (LINKED, seller.account_id),
            (RELOGIN, seller.account_id),
        ]
        assert read(types=[RELOGIN]) == [(RELOGIN, seller.account_id)]
        assert read(types=[LINKED], account_id=other_seller.account_id) == [(LINKED, other_seller.account_id)]
        assert read(types=[RELOGIN, "account.deleted"], account_id=other_seller.account_id) == []
        assert read(owner_id="owner-b") == [(LINKED, other_seller.account_id)]


class TestTheAsyncClient:
    async def test_reads_the_feed_and_resumes_from_its_cursor(
        self, async_link: AsyncAllegroLink, seller: Seller, fake: FakeControls
    ) -> None:
        await in_async_feed(async_link, seller.account_id, LINKED)
        feed = async_link.events(wait=0, stop_when_idle=True)
        before = [event async for event in feed]

        fake.revoke(seller.login)
        with pytest.raises(ReloginRequired) as raised:
            await async_link.refresh(seller.account_id)
        assert raised.value.reason == "grant_revoked"
        await in_async_feed(async_link, seller.account_id, RELOGIN)
        resumed = [event async for event in async_link.events(after=feed.cursor, wait=0, stop_when_idle=True)]

        assert summary(before) == [(LINKED, seller.account_id)]
        assert summary(resumed) == [(RELOGIN, seller.account_id)]
        assert dict(resumed[0].data) == {"reason": "grant_revoked"}


class _Announcing(httpx.BaseTransport):
    """Real HTTP, calling `announce` with each request just before it is sent."""

    def __init__(self, inner: httpx.BaseTransport, announce: Callable[[httpx.Request], None]) -> None:
        self._inner = inner
        self._announce = announce

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._announce(request)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
