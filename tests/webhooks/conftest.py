"""A service (in this process) with quick webhook retries, and its own helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from allegro_link.app import create_app
from allegro_link.settings import Settings
from tests.support.factories import make_settings
from tests.support.live import lifespan

QUICK_RETRIES = [1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, webhook_retry_delays=QUICK_RETRIES, events_poll_seconds=0.5)


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    """The service with its delivery workers running."""
    application = create_app(settings)
    async with lifespan(application) as manager:
        yield manager.app  # type: ignore[misc]
