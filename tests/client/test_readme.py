"""The examples in clients/python/README.md run as written, against the service and the fake Allegro.

Only the two host names are swapped for the test servers; the names the examples leave to the reader
(`API_KEY`, `account_id`, …) are provided.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from allegro_link_client import AllegroLink, Event

from tests.client.conftest import Seller
from tests.client.support import FakeControls
from tests.client.test_events_live import in_feed, revoke_and_refresh
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness

README = Path(__file__).parents[2] / "clients" / "python" / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def on_test_servers(code: str, service_url: str, fake_url: str) -> str:
    return code.replace("https://allegro-link.internal", service_url).replace(
        "https://api.allegro.pl", fake_url
    )


def test_the_readme_has_the_three_examples() -> None:
    assert len(python_blocks()) == 3


def test_the_repositorys_readme_shows_the_first_example_as_it_is_here() -> None:
    top = re.findall(r"```python\n(.*?)```", (README.parents[2] / "README.md").read_text(), flags=re.DOTALL)
    assert top == [python_blocks()[0]]


def test_the_sync_example_calls_allegro_with_a_valid_token(
    service_url: str, fake_url: str, api_key: str, seller: Seller
) -> None:
    names: dict[str, Any] = {"API_KEY": api_key, "account_id": seller.account_id}

    exec(on_test_servers(python_blocks()[0], service_url, fake_url), names)  # noqa: S102 - our own README
    names["link"].close()

    assert names["me"].status_code == 200
    assert names["me"].json()["login"] == seller.login


async def test_the_async_example_calls_allegro_with_a_valid_token(
    service_url: str, fake_url: str, api_key: str, seller: Seller
) -> None:
    names: dict[str, Any] = {"API_KEY": api_key}

    exec(on_test_servers(python_blocks()[1], service_url, fake_url), names)  # noqa: S102 - our own README

    assert await names["seller_login"](seller.account_id) == seller.login


@pytest.fixture
async def events_key(harness: LinkHarness) -> str:
    return await new_api_key(harness.settings, "events:read")


def test_the_feed_example_hands_out_each_event_once_and_resumes_from_the_saved_cursor(
    service_url: str, events_key: str, link: AllegroLink, seller: Seller, fake: FakeControls
) -> None:
    handled: list[Event] = []
    with AllegroLink(service_url, api_key=events_key) as events_link:
        names: dict[str, Any] = {"link": events_link, "saved_cursor": None, "handle": handled.append}
        in_feed(events_link, seller.account_id, "account.linked")

        exec(python_blocks()[2], names)  # noqa: S102 - our own README
        first_cursor = names["saved_cursor"]
        revoke_and_refresh(link, fake, seller)
        in_feed(events_link, seller.account_id, "account.relogin_required")
        exec(python_blocks()[2], names)  # noqa: S102 - the same loop again, from the saved cursor

    assert [(event.type, str(event.account.id)) for event in handled] == [
        ("account.linked", seller.account_id),
        ("account.relogin_required", seller.account_id),
    ]
    assert first_cursor is not None
    assert names["saved_cursor"] not in (None, first_cursor)
