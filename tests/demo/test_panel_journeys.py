"""The "Konta Allegro" panel, used in a real browser the way a Polkurier customer lives it."""

from __future__ import annotations

from tests.demo.browser_stack import require_browser_stack

require_browser_stack()

from playwright.async_api import Dialog, Page, expect  # noqa: E402

from tests.demo.panel import (  # noqa: E402
    BANNER,
    WAYBILL_WARNING,
    DemoPanel,
    account_as_api_shows_it,
    accounts_of,
    expire_refresh_token,
    leave_unused,
    link_through_api,
)
from tests.support.link import LinkHarness  # noqa: E402


class TestLinkingANewAccount:
    async def test_linked_account_is_announced_and_listed_as_active(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        panel = DemoPanel(page, demo_url)
        await panel.open()
        await expect(page.get_by_role("heading", name="Konta Allegro", exact=True)).to_be_visible()
        await expect(page.get_by_text("Nie masz jeszcze połączonych kont Allegro.")).to_be_visible()

        await panel.link_account("Sprzedawca1")

        await expect(panel.message).to_have_text("Konto Sprzedawca1 zostało połączone.")
        await expect(panel.rows).to_have_count(1)
        await expect(panel.row("Sprzedawca1")).to_contain_text("1.")
        await expect(panel.row("Sprzedawca1")).to_contain_text("Aktywne")
        await expect(panel.banner).to_be_hidden()
        assert await panel.address() == demo_url, "the link_session must leave the address bar"
        assert [a["login"] for a in await accounts_of(harness)] == ["Sprzedawca1"]

    async def test_reload_after_linking_does_not_complete_twice(self, page: Page, demo_url: str) -> None:
        panel = DemoPanel(page, demo_url)
        await panel.open()
        await panel.link_account("Sprzedawca1")
        await page.reload()
        await panel.wait_until_ready()
        await expect(panel.message).to_be_hidden()
        await expect(panel.rows).to_have_count(1)


class TestNearTheDeadline:
    async def test_an_account_near_its_deadline_says_in_how_many_days_and_highlights_its_key(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        near = await link_through_api(harness, "Sprzedawca1")
        await link_through_api(harness, "Sprzedawca2")
        await leave_unused(harness, near["id"], days=80.5)  # 9.5 days left: "za 10 dni"

        panel = DemoPanel(page, demo_url)
        await panel.open()

        await expect(panel.row("Sprzedawca1")).to_contain_text("Wymaga ponownego logowania za 10 dni")
        await expect(panel.row("Sprzedawca2")).to_contain_text("Aktywne")
        highlighted = "rgb(255, 90, 0)"
        await expect(panel.key_button("Sprzedawca1")).to_have_css("background-color", highlighted)
        await expect(panel.key_button("Sprzedawca2")).not_to_have_css("background-color", highlighted)
        await expect(panel.key_button("Sprzedawca1").locator("svg")).to_be_visible()
        await expect(panel.banner).to_have_text(BANNER)
        await expect(panel.banner).to_have_attribute("data-count", "1")
        await expect(page.locator("body")).not_to_contain_text("🔑")  # drawn, not an emoji font's glyph


class TestLoggingInAgain:
    async def test_expired_refresh_token_shows_the_banner_and_the_reason(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        account = await link_through_api(harness, "Sprzedawca1")
        await link_through_api(harness, "Sprzedawca2")
        await expire_refresh_token(harness, account["id"], "Sprzedawca1")

        panel = DemoPanel(page, demo_url)
        await panel.open()

        await expect(panel.banner).to_have_text(BANNER)
        expired = panel.row("Sprzedawca1")
        await expect(expired).to_contain_text("⚠")
        await expect(expired).to_contain_text("Wymaga ponownego logowania")
        await expect(expired).to_contain_text("konto nie było używane przez 3 miesiące")
        await expect(panel.row("Sprzedawca2")).to_contain_text("Aktywne")
        await expect(panel.row("Sprzedawca2")).not_to_contain_text("⚠")

    async def test_key_button_logs_the_account_in_again(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        account = await link_through_api(harness, "Sprzedawca1")
        await expire_refresh_token(harness, account["id"], "Sprzedawca1")
        expired = await account_as_api_shows_it(harness, account["id"])
        panel = DemoPanel(page, demo_url)
        await panel.open()

        allegro = await panel.log_in_again("Sprzedawca1")
        await allegro.log_in("Sprzedawca1")
        await allegro.consent()
        await panel.wait_until_ready()

        await expect(panel.message).to_have_text("Konto Sprzedawca1 zostało ponownie zalogowane.")
        await expect(panel.row("Sprzedawca1")).to_contain_text("Aktywne")
        await expect(panel.banner).to_be_hidden()
        after = await account_as_api_shows_it(harness, account["id"])
        assert (after["id"], after["status"]) == (account["id"], "active")
        # The stored refresh token is the new one, not the dead one (whose expiry the helper set to the past;
        # comparing with the first link's expiry would be flaky: both can fall in the same second).
        assert after["refresh_token_expires_at"] > expired["refresh_token_expires_at"]

    async def test_switching_to_another_allegro_user_names_both_logins_and_changes_nothing(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        panel = DemoPanel(page, demo_url)
        await panel.open()
        await panel.link_account("Sprzedawca1")  # this browser is now logged in at Allegro
        account = (await accounts_of(harness))[0]
        await expire_refresh_token(harness, account["id"], "Sprzedawca1")
        await panel.open()
        before = await account_as_api_shows_it(harness, account["id"])

        allegro = await panel.log_in_again("Sprzedawca1")
        await expect(allegro.current_login).to_have_text("Sprzedawca1")
        await allegro.switch_account()
        await allegro.log_in("KtosInny")
        await allegro.consent()
        await panel.wait_until_ready()

        await expect(panel.message).to_contain_text("jako KtosInny")
        await expect(panel.message).to_contain_text("to konto to Sprzedawca1")
        await expect(panel.message).to_contain_text("„Zmień konto”")
        await expect(panel.rows).to_have_count(1)
        await expect(panel.row("Sprzedawca1")).to_contain_text("konto nie było używane przez 3 miesiące")
        await expect(panel.banner).to_be_visible()
        assert await account_as_api_shows_it(harness, account["id"]) == before


class TestCancelling:
    async def test_cancel_at_allegro_is_reported_and_links_nothing(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        panel = DemoPanel(page, demo_url)
        await panel.open()
        allegro = await panel.connect_new_account()
        await allegro.log_in("Sprzedawca1")
        await allegro.cancel()
        await panel.wait_until_ready()

        await expect(panel.message).to_have_text(
            "Logowanie w Allegro zostało anulowane. Konto nie zostało połączone."
        )
        await expect(panel.rows).to_have_count(0)
        assert await panel.address() == demo_url
        assert await accounts_of(harness) == []


class TestDisconnecting:
    async def test_disconnect_warns_about_waybills_and_removes_the_account(
        self, page: Page, demo_url: str, harness: LinkHarness
    ) -> None:
        await link_through_api(harness, "Sprzedawca1")
        await link_through_api(harness, "Sprzedawca2")
        panel = DemoPanel(page, demo_url)
        await panel.open()
        questions: list[str] = []

        async def decline(dialog: Dialog) -> None:
            questions.append(dialog.message)
            await dialog.dismiss()

        page.once("dialog", decline)
        await panel.disconnect_button("Sprzedawca1").click()
        await panel.wait_until_ready()
        await expect(panel.rows).to_have_count(2)
        assert len(await accounts_of(harness)) == 2

        async def accept(dialog: Dialog) -> None:
            questions.append(dialog.message)
            await dialog.accept()

        page.once("dialog", accept)
        await panel.disconnect_button("Sprzedawca1").click()
        await panel.wait_until_ready()

        await expect(panel.message).to_have_text("Konto Sprzedawca1 zostało odłączone.")
        await expect(panel.rows).to_have_count(1)
        await expect(panel.row("Sprzedawca2")).to_contain_text("1.")
        assert [a["login"] for a in await accounts_of(harness)] == ["Sprzedawca2"]
        assert len(questions) == 2
        assert all("Sprzedawca1" in q and WAYBILL_WARNING in q for q in questions)
