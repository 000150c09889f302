"""Shared fixtures: one PostgreSQL per run, migrated once; every test starts from empty tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from allegro_link.app import create_app
from allegro_link.db import create_engine, create_sessionmaker
from allegro_link.fake_allegro import FakeAllegroConfig, FakeClient, create_fake_allegro_app
from allegro_link.settings import Settings
from tests.demo.browser_stack import NOT_RUN
from tests.deploy.tools import NOT_RUN as DEPLOY_NOT_RUN
from tests.support.database import (
    PgServer,
    create_migrated_database,
    drop,
    new_database_name,
    start_server,
    truncate_all,
)
from tests.support.factories import CLIENT_ID, CLIENT_SECRET, end_to_end_settings, make_settings
from tests.support.link import LinkHarness
from tests.support.live import START_TIMEOUT, free_port, lifespan, serve_in_thread
from tests.support.tokens import Linked, link_account


@pytest.fixture(scope="session")
async def pg_server() -> AsyncIterator[PgServer]:
    async for server in start_server():
        yield server


@pytest.fixture(scope="session")
async def migrated_database_url(pg_server: PgServer) -> AsyncIterator[str]:
    name = new_database_name("main")
    url = await create_migrated_database(pg_server, name)
    yield url
    await drop(pg_server, name)


@pytest.fixture
async def database_url(migrated_database_url: str) -> AsyncIterator[str]:
    yield migrated_database_url
    await truncate_all(migrated_database_url)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The service's own kind of engine on the test's database."""
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with lifespan(application) as manager:
        yield manager.app  # type: ignore[misc]


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


# -- end to end: the fake Allegro and the service over real HTTP on 127.0.0.1 --------------------


@pytest.fixture
def fake_and_service_ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture
def link_settings(database_url: str, fake_and_service_ports: tuple[int, int]) -> Settings:
    return end_to_end_settings(database_url, fake_and_service_ports)


@pytest.fixture
def fake_url(link_settings: Settings, fake_and_service_ports: tuple[int, int]) -> Iterator[str]:
    config = FakeAllegroConfig(
        clients=[
            FakeClient(
                client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[link_settings.redirect_uri]
            )
        ],
        controls_enabled=True,
    )
    with serve_in_thread(create_fake_allegro_app(config), port=fake_and_service_ports[0]) as url:
        yield url


@pytest.fixture
def service_url(
    link_settings: Settings, fake_url: str, fake_and_service_ports: tuple[int, int]
) -> Iterator[str]:
    with serve_in_thread(create_app(link_settings), port=fake_and_service_ports[1]) as url:
        yield url


@pytest.fixture
async def harness(service_url: str, fake_url: str, link_settings: Settings) -> AsyncIterator[LinkHarness]:
    # Bounds for failing, not waits: under load average 40 on 2 cores single requests took over 10 s.
    async with (
        httpx.AsyncClient(base_url=service_url, timeout=START_TIMEOUT) as service,
        httpx.AsyncClient(base_url=fake_url, timeout=START_TIMEOUT) as fake,
    ):
        yield LinkHarness(service=service, fake=fake, settings=link_settings)


@pytest.fixture
async def linked(harness: LinkHarness) -> Linked:
    """Sprzedawca1 linked by owner-a, and a `tokens:read` key."""
    return await link_account(harness)


# Here, not in tests/demo/conftest.py: with pytest-xdist only the controller prints the summary, and it
# loads no conftest below tests/.
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reasons = {
        str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        for report in terminalreporter.stats.get("skipped", [])
        if NOT_RUN in str(report.longrepr) or DEPLOY_NOT_RUN in str(report.longrepr)
    }
    for reason in sorted(reasons):
        terminalreporter.write_sep("!", reason.removeprefix("Skipped: "), red=True, bold=True)
