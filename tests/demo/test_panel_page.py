"""The panel's messages, its keyboard and phone use, and the pasted-JWT mode outside dev mode."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from tests.demo.browser_stack import require_browser_stack

require_browser_stack()

from playwright.async_api import Page, expect  # noqa: E402
from sqlalchemy import update  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from allegro_link.accounts.models import AccountStatus, ReloginReason  # noqa: E402
from allegro_link.app import create_app  # noqa: E402
from allegro_link.db import utcnow  # noqa: E402
from allegro_link.oauth.models import LinkSession  # noqa: E402
from tests.demo.conftest import ARTIFACTS  # noqa: E402
from tests.demo.panel import (  # noqa: E402
    DEMO_OWNER,
    DemoPanel,
    expire_refresh_token,
    leave_unused,
    link_through_api,
)
from tests.support.accounts import insert_account  # noqa: E402
from tests.support.factories import make_settings, owner_token  # noqa: E402
from tests.support.link import LinkHarness  # noqa: E402
from tests.support.live import free_port, serve_in_thread  # noqa: E402

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "demo.png"
# `ALLEGRO_LINK_WRITE_DEMO_PNG=1 pytest tests/demo -k screenshot` refreshes the README's picture.
WRITE_DOCS_SCREENSHOT = os.environ.get("ALLEGRO_LINK_WRITE_DEMO_PNG") == "1"


class TestReturnFromAllegro:
    @pytest.mark.parametrize(
        ("query", "message"),
        [
            (
                "allegro_link=error&error=access_denied",
                "Logowanie w Allegro zostało anulowane. Konto nie zostało połączone.",
            ),
            ("allegro_link=error&error=state_expired", "Sesja logowania wygasła"),
            ("allegro_link=error&error=allegro_unavailable", "Allegro jest chwilowo niedostępne"),
            ("allegro_link=error&error=exchange_rejected", "Allegro odrzuciło logowanie"),
            ("allegro_link=error&error=allegro_error", "Allegro zgłosiło błąd podczas logowania"),
            (
                "allegro_link=complete&link_session=" + "A" * 43,
                "sesja logowania wygasła albo została już użyta",
            ),
        ],
    )
    async def test_each_outcome_has_its_message_and_leaves_the_address_bar(
        self, page: Page, demo_url: str, query: str, message: str
    ) -> None:
        panel = DemoPanel(page, demo_url)
        await page.goto(f"{demo_url}?{query}")
        await panel.wait_until_ready()
        await expect(panel.message).to_contain_text(message)
        assert await panel.address() == demo_url

    async def test_allegro_down_during_the_exchange(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        panel = DemoPanel(page, demo_url)
        await panel.open()
        allegro = await panel.connect_new_account()
        await allegro.log_in("Sprzedawca1")
        fault = {"endpoint": "token", "kind": "status", "status": 503, "count": 1}
        assert (await harness.fake.post("/__fake__/faults", json=fault)).status_code == 201
        await allegro.consent()
        await panel.wait_until_ready()
        await expect(panel.message).to_contain_text("Allegro jest chwilowo niedostępne")
        await expect(panel.rows).to_have_count(0)

    async def test_coming_back_after_the_state_expired(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        panel = DemoPanel(page, demo_url)
        await panel.open()
        allegro = await panel.connect_new_account()
        await allegro.log_in("Sprzedawca1")
        engine = create_async_engine(harness.settings.database_url.get_secret_value())
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    update(LinkSession).values(expires_at=utcnow() - timedelta(seconds=1))
                )
        finally:
            await engine.dispose()
        await allegro.consent()
        await panel.wait_until_ready()
        await expect(panel.message).to_contain_text("Sesja logowania wygasła")


class TestAccessibility:
    async def test_keyboard_alone_reaches_every_button_and_starts_a_link(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        await link_through_api(harness, "Sprzedawca1")
        panel = DemoPanel(page, demo_url)
        await panel.open()
        reached: list[str] = []
        for _ in range(12):
            await page.keyboard.press("Tab")
            focused = await page.evaluate(
                "(() => { const e = document.activeElement;"
                " return [e.getAttribute('aria-label') || e.textContent.trim(),"
                " getComputedStyle(e).outlineStyle]; })()"
            )
            reached.append(focused[0])
            if focused[0].startswith(("Połącz", "Zaloguj", "Odłącz")):
                assert focused[1] != "none", f"{focused[0]} shows no focus ring"
        assert reached.index("Połącz konto Allegro") < reached.index("Zaloguj ponownie konto Sprzedawca1")
        assert "Odłącz konto Sprzedawca1" in reached

        await page.get_by_role("button", name="Połącz konto Allegro").focus()
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(re.compile(r"/auth/oauth/authorize\?"))
        await expect(page.locator("#login")).to_be_focused()

    async def test_readable_at_360_px_without_sideways_scrolling(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        await page.set_viewport_size({"width": 360, "height": 740})
        await link_through_api(harness, "Sprzedawca1")
        await insert_account(
            harness.settings,
            owner_id=DEMO_OWNER,
            login="HurtowniaCzesciSamochodowychKowalski",
            status=AccountStatus.RELOGIN_REQUIRED,
            reason=ReloginReason.LEGACY_ACCOUNT,
        )
        panel = DemoPanel(page, demo_url)
        await panel.open()
        await expect(panel.row("HurtowniaCzesciSamochodowychKowalski")).to_contain_text("⚠")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360
        for button in await page.get_by_role("button").all():
            box = await button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
            assert box["height"] >= 24, "touch targets stay usable"


class TestWithoutDevMode:
    async def test_the_page_asks_for_the_owner_jwt_and_keeps_it_for_the_tab(
        self, page: Page, database_url: str
    ) -> None:
        settings = make_settings(database_url, demo_enabled=True)
        await insert_account(settings, owner_id="owner-a", login="Sprzedawca1")
        port = free_port()
        with serve_in_thread(create_app(settings), port=port):
            panel = DemoPanel(page, f"http://localhost:{port}/demo")
            await panel.open()
            await expect(page.get_by_label("Token JWT właściciela")).to_be_visible()
            await expect(page.get_by_role("button", name="Połącz konto Allegro")).to_be_hidden()

            await page.get_by_label("Token JWT właściciela").fill("not-a-jwt")
            await page.get_by_role("button", name="Zapisz token").click()
            await panel.wait_until_ready()
            await expect(panel.message).to_contain_text("Token wygasł lub jest nieprawidłowy")

            await page.get_by_label("Token JWT właściciela").fill(owner_token("owner-a"))
            await page.get_by_role("button", name="Zapisz token").click()
            await panel.wait_until_ready()
            await expect(panel.row("Sprzedawca1")).to_contain_text("Aktywne")
            await expect(page.locator("#owner-name")).to_have_text("owner-a")

            await page.reload()
            await panel.wait_until_ready()
            await expect(panel.row("Sprzedawca1")).to_be_visible()


class TestScreenshot:
    async def test_screenshot_of_an_active_a_near_deadline_and_a_relogin_required_account(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        await link_through_api(harness, "Sprzedawca1")
        near = await link_through_api(harness, "HurtowniaOpon")
        await leave_unused(harness, near["id"], days=85.5)
        expired = await link_through_api(harness, "SklepZabawki")
        await expire_refresh_token(harness, expired["id"], "SklepZabawki")
        await page.set_viewport_size({"width": 1200, "height": 600})  # the full page is as tall as it needs
        panel = DemoPanel(page, demo_url)
        await panel.open()
        await expect(panel.row("Sprzedawca1")).to_contain_text("Aktywne")
        await expect(panel.row("HurtowniaOpon")).to_contain_text("Wymaga ponownego logowania za 5 dni")
        await expect(panel.row("SklepZabawki")).to_contain_text("konto nie było używane przez 3 miesiące")
        await expect(panel.banner).to_be_visible()

        ARTIFACTS.mkdir(exist_ok=True)
        targets = [ARTIFACTS / "demo.png"] + ([DOCS_SCREENSHOT] if WRITE_DOCS_SCREENSHOT else [])
        for target in targets:
            await page.screenshot(path=target, full_page=True)
