"""The demo panel against the real service, the fake Allegro and PostgreSQL, in headless Chromium.

The service runs with the demo on and an owner-token minter (as under `allegro-link dev`), so the
page mints its own owner JWT (for
`demo-owner` unless told otherwise). The page is opened at `http://localhost:PORT/demo`, the host of the
redirect URI, so the whole journey stays on one origin. A failed test leaves a full-page screenshot in
`test-artifacts/`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from allegro_link.app import create_app
from allegro_link.demo.owner_token import OwnerTokenMinter
from allegro_link.settings import Settings
from tests.demo.browser_stack import CHROMIUM, CHROMIUM_ARGS
from tests.support.factories import ALLOWED_RETURN, end_to_end_settings
from tests.support.live import serve_in_thread

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.fixture
def link_settings(database_url: str, fake_and_service_ports: tuple[int, int]) -> Settings:
    """The end-to-end settings of the root conftest, with the demo on and its own address allowed back."""
    service_port = fake_and_service_ports[1]
    return end_to_end_settings(
        database_url,
        fake_and_service_ports,
        return_url_allowlist=f"http://localhost:{service_port}/,{ALLOWED_RETURN}",
        demo_enabled=True,
    )


@pytest.fixture
def service_url(
    link_settings: Settings, fake_url: str, fake_and_service_ports: tuple[int, int]
) -> Iterator[str]:
    """The service as `allegro-link dev` builds it: with the minter that only dev passes."""
    app = create_app(link_settings, owner_token_minter=OwnerTokenMinter.for_settings(link_settings))
    with serve_in_thread(app, port=fake_and_service_ports[1]) as url:
        yield url


@pytest.fixture
def demo_url(service_url: str, fake_and_service_ports: tuple[int, int]) -> str:
    return f"http://localhost:{fake_and_service_ports[1]}/demo"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh browser profile per test (no cookies at the fake Allegro, empty sessionStorage)."""
    context = await browser.new_context(viewport={"width": 1200, "height": 900}, locale="pl-PL")
    tab = await context.new_page()
    tab.set_default_timeout(10_000)
    try:
        yield tab
    finally:
        reports = request.node.stash.get(PHASE_REPORTS, {})
        if any(report.failed for report in reports.values()):
            ARTIFACTS.mkdir(exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])
            await tab.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
        await context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Kept on the item so that the page fixture's teardown knows whether the test failed.
    report: pytest.TestReport = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report
