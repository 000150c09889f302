"""Fixtures for the fault tests: a short refresh deadline, so that "slower than the deadline" is quick."""

from __future__ import annotations

import pytest

from allegro_link.settings import Settings
from tests.reliability.support import Linked
from tests.support.factories import end_to_end_settings
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness

REFRESH_DEADLINE = 1.0


@pytest.fixture
def link_settings(database_url: str, fake_and_service_ports: tuple[int, int]) -> Settings:
    return end_to_end_settings(
        database_url, fake_and_service_ports, token_refresh_deadline_seconds=REFRESH_DEADLINE
    )


@pytest.fixture
async def linked(harness: LinkHarness) -> Linked:
    response = await harness.link("owner-a", "Sprzedawca1")
    assert response.status_code == 200, response.text
    key = await new_api_key(harness.settings, "tokens:read")
    return Linked(harness, response.json()["account"]["id"], key)
