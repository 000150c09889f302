"""Fixtures of the account tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from allegro_link.app import create_app
from allegro_link.resources import Resources
from allegro_link.settings import Settings
from tests.support.live import lifespan


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[tuple[Resources, httpx.AsyncClient]]:
    """The app as `client` serves it, with its resources at hand (its engine, audit log, sessionmaker)."""
    app = create_app(settings)
    async with lifespan(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app.state.resources, http
