"""The examples in clients/python/README.md run as written, against the service and the fake Allegro.

Only the two host names are swapped for the test servers; the names the examples leave to the reader
(`API_KEY`, `account_id`, …) are provided.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from allegro_link_client import AllegroLink, Event

from tests.client.conftest import Seller
from tests.client.test_events import three_pages

README = Path(__file__).parents[2] / "clients" / "python" / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def on_test_servers(code: str, service_url: str, fake_url: str) -> str:
    return code.replace("https://allegro-link.internal", service_url).replace(
        "https://api.allegro.pl", fake_url
    )


def test_the_readme_has_the_three_examples() -> None:
    assert len(python_blocks()) == 3


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


def test_the_feed_example_hands_out_every_event_and_ends_on_the_last_cursor() -> None:
    # Against the contract's feed (see test_events.py) until the service serves GET /events.
    handled: list[Event] = []
    with AllegroLink("http://link.test", api_key="k", transport=httpx.MockTransport(three_pages())) as link:
        names: dict[str, Any] = {"link": link, "saved_cursor": None, "handle": handled.append}

        exec(python_blocks()[2], names)  # noqa: S102 - our own README

    assert [event.id for event in handled] == ["ev-1", "ev-2", "ev-3"]
    assert names["saved_cursor"] == "c2"
