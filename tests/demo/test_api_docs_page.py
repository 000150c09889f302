"""`/docs` in a real browser: Swagger UI renders from the package's own files under its CSP."""

from __future__ import annotations

import pytest

from tests.demo.browser_stack import require_browser_stack

require_browser_stack()

from playwright.async_api import ConsoleMessage, Page, Request, expect  # noqa: E402

from allegro_link.app import create_app  # noqa: E402
from tests.support.factories import make_settings  # noqa: E402
from tests.support.live import serve_in_thread  # noqa: E402

RENDER = 60_000  # ms


@pytest.mark.slow
async def test_swagger_ui_renders_with_nothing_from_elsewhere_and_no_csp_violation(
    page: Page, database_url: str
) -> None:
    console: list[str] = []
    requested: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        console.append(message.text)

    def on_request(request: Request) -> None:
        requested.append(request.url)

    page.on("console", on_console)
    page.on("request", on_request)
    with serve_in_thread(create_app(make_settings(database_url))) as base:
        await page.goto(f"{base}/docs")
        # A bound for failing, not a wait: on a loaded 2-core machine Swagger UI took over Playwright's
        # default 5 s to render its bundle and the fetched document.
        await expect(page.locator(".swagger-ui .info .title")).to_contain_text("allegro-link", timeout=RENDER)
        # An operation's section renders from the fetched document, not just the page shell.
        await expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=RENDER)

    assert [url for url in requested if not url.startswith(base)] == []
    assert [text for text in console if "Content Security Policy" in text] == []
