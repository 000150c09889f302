"""The client against the real service and the fake Allegro, both over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from allegro_link_client import AllegroLink, AsyncAllegroLink

from tests.client.support import AsyncCountingTransport, CallLog, CountingTransport, FakeControls
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness

LOGIN = "Sprzedawca1"


@dataclass(frozen=True)
class Seller:
    """An account linked through the whole OAuth flow, so that its tokens are the fake Allegro's."""

    account_id: str
    login: str


@pytest.fixture
async def seller(harness: LinkHarness) -> Seller:
    response = await harness.link("owner-a", LOGIN)
    assert response.status_code == 200, response.text
    account_id = response.json()["account"]["id"]
    # Used at once, as a service would: a token issued by the link and reported rejected is refreshed
    # at once (only a forced refresh's own token is held back for 10 s).
    return Seller(account_id=account_id, login=LOGIN)


@pytest.fixture
async def api_key(harness: LinkHarness) -> str:
    return await new_api_key(harness.settings, "tokens:read", "accounts:read")


@pytest.fixture
def calls() -> CallLog:
    return CallLog()


@pytest.fixture
def fake(fake_url: str) -> FakeControls:
    return FakeControls(fake_url)


# A generous deadline: the machine running the suite may be slow; the deadline has tests of its own.
DEADLINE = 30.0


@pytest.fixture
def link(service_url: str, api_key: str, calls: CallLog) -> Iterator[AllegroLink]:
    with AllegroLink(
        service_url, api_key=api_key, deadline=DEADLINE, transport=CountingTransport(calls)
    ) as client:
        yield client


@pytest.fixture
async def async_link(service_url: str, api_key: str, calls: CallLog) -> AsyncIterator[AsyncAllegroLink]:
    async with AsyncAllegroLink(
        service_url, api_key=api_key, deadline=DEADLINE, transport=AsyncCountingTransport(calls)
    ) as client:
        yield client
