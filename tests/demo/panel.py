"""Page objects: the demo panel as its user sees it, and the fake Allegro's login and consent pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from playwright.async_api import Locator, Page, expect

from allegro_link.db import utcnow
from tests.support.accounts import update_account
from tests.support.factories import bearer, owner_token
from tests.support.link import LinkHarness

DEMO_OWNER = "demo-owner"  # whom the page acts for in dev mode unless told otherwise
BANNER = "Jedno z Twoich kont wymaga ponownego logowania. Kliknij przycisk z kluczem, aby zalogować konto."
WAYBILL_WARNING = (
    "Uwaga! Jeśli odłączysz konto w Allegro, to nie będziemy mogli zaktualizować listów przewozowych "
    "zaimportowanych zleceń."
)


@dataclass
class FakeAllegroPages:
    """The fake Allegro's HTML pages, driven by their stable ids and button texts."""

    page: Page

    async def log_in(self, login: str) -> None:
        await self.page.locator("#login").fill(login)
        await self.page.get_by_role("button", name="Zaloguj się").click()

    @property
    def current_login(self) -> Locator:
        return self.page.locator("#current-login")

    async def consent(self) -> None:
        await self.page.get_by_role("button", name="Powiąż konto").click()

    async def switch_account(self) -> None:
        await self.page.get_by_role("button", name="Zmień konto").click()

    async def cancel(self) -> None:
        await self.page.get_by_role("button", name="Anuluj").click()


@dataclass
class DemoPanel:
    page: Page
    url: str

    async def open(self) -> None:
        await self.page.goto(self.url)
        await self.wait_until_ready()

    async def wait_until_ready(self) -> None:
        """The page marks <body data-state="ready"> once it has shown the API's answers."""
        await expect(self.page.locator("body")).to_have_attribute("data-state", "ready")

    @property
    def message(self) -> Locator:
        return self.page.locator("#message")

    @property
    def banner(self) -> Locator:
        return self.page.locator("#relogin-banner")

    @property
    def rows(self) -> Locator:
        return self.page.locator("#accounts tbody tr")

    def row(self, login: str) -> Locator:
        return self.rows.filter(has=self.page.get_by_role("cell", name=login, exact=True))

    def key_button(self, login: str) -> Locator:
        return self.row(login).get_by_role("button", name="Zaloguj ponownie")

    def disconnect_button(self, login: str) -> Locator:
        return self.row(login).get_by_role("button", name="Odłącz")

    async def connect_new_account(self) -> FakeAllegroPages:
        await self.page.get_by_role("button", name="Połącz konto Allegro").click()
        return FakeAllegroPages(self.page)

    async def log_in_again(self, login: str) -> FakeAllegroPages:
        await self.key_button(login).click()
        return FakeAllegroPages(self.page)

    async def link_account(self, login: str) -> None:
        """The whole "Połącz konto Allegro" journey, back on the panel."""
        allegro = await self.connect_new_account()
        await allegro.log_in(login)
        await allegro.consent()
        await self.wait_until_ready()

    async def address(self) -> str:
        href: str = await self.page.evaluate("window.location.href")
        return href


async def link_through_api(harness: LinkHarness, login: str, owner: str = DEMO_OWNER) -> dict[str, Any]:
    """An account linked by a frontend beforehand (through the fake Allegro, with real tokens)."""
    response = await harness.link(owner, login)
    assert response.status_code == 200, response.text
    account: dict[str, Any] = response.json()["account"]
    return account


async def expire_refresh_token(harness: LinkHarness, account_id: str, login: str) -> None:
    """Three months without use: Allegro's refresh token is dead, and its `exp` has passed."""
    expired = await harness.fake.post(f"/__fake__/users/{login}/expire", json={"what": "refresh"})
    assert expired.status_code == 200, expired.text
    await update_account(
        harness.settings, account_id, refresh_token_expires_at=utcnow() - timedelta(seconds=1)
    )


async def leave_unused(harness: LinkHarness, account_id: str, days: float) -> None:
    """No use for `days` (and no keep-alive call): Allegro's 90-day rule comes closer."""
    await update_account(harness.settings, account_id, last_used_at=utcnow() - timedelta(days=days))


async def account_as_api_shows_it(harness: LinkHarness, account_id: str, owner: str = DEMO_OWNER) -> Any:
    response = await harness.service.get(f"/accounts/{account_id}", headers=bearer(owner_token(owner)))
    return response.json() if response.status_code == 200 else response.status_code


async def accounts_of(harness: LinkHarness, owner: str = DEMO_OWNER) -> list[dict[str, Any]]:
    response = await harness.service.get("/accounts", headers=bearer(owner_token(owner)))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
