"""Fixtures for the fault tests: a short refresh deadline, so that "slower than the deadline" is quick."""

from __future__ import annotations

import pytest

from allegro_link.settings import Settings
from tests.support.factories import end_to_end_settings

REFRESH_DEADLINE = 1.0


@pytest.fixture
def link_settings(database_url: str, fake_and_service_ports: tuple[int, int]) -> Settings:
    return end_to_end_settings(
        database_url, fake_and_service_ports, token_refresh_deadline_seconds=REFRESH_DEADLINE
    )
