"""Fixtures for the fake Allegro's tests: an app with a hand-moved clock, driven in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from allegro_link.fake_allegro import FakeAllegroApp, FakeAllegroConfig, FakeClient, create_fake_allegro_app
from allegro_link.fake_allegro.tokens import generate_signing_key
from tests.fake_allegro.helpers import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, FakeClock

MakeApp = Callable[..., FakeAllegroApp]


@pytest.fixture(scope="session")
def signing_key() -> RSAPrivateKey:
    # RSA generation costs tens of milliseconds; one key for the whole run keeps the suite fast.
    return generate_signing_key()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(signing_key: RSAPrivateKey, clock: FakeClock) -> MakeApp:
    def make(**overrides: object) -> FakeAllegroApp:
        settings: dict[str, object] = {
            "clients": [
                FakeClient(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[REDIRECT_URI])
            ],
            "controls_enabled": True,
            "clock": clock,
            "signing_key": signing_key,
        }
        return create_fake_allegro_app(FakeAllegroConfig(**(settings | overrides)))  # type: ignore[arg-type]

    return make


@pytest.fixture
def app(make_app: MakeApp) -> FakeAllegroApp:
    return make_app()


@pytest.fixture
async def http(app: FakeAllegroApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://allegro.pl") as client:
        yield client
