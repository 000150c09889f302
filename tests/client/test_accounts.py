"""`account()` and `accounts()`: the service's account objects, all pages, with the filters."""

from __future__ import annotations

import uuid

import pytest
from allegro_link_client import AllegroLink, AllegroLinkError, AsyncAllegroLink

from tests.client.conftest import Seller
from tests.client.support import CallLog
from tests.support.accounts import update_account
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness


@pytest.fixture
async def three_accounts(harness: LinkHarness, seller: Seller) -> list[str]:
    others = [(await harness.link("owner-b", login)).json()["account"]["id"] for login in ("Drugi", "Trzeci")]
    return [seller.account_id, *others]


class TestAccount:
    def test_an_account_reads_as_the_service_shows_it(self, link: AllegroLink, seller: Seller) -> None:
        account = link.account(seller.account_id)

        assert account.id == uuid.UUID(seller.account_id)
        assert (account.owner_id, account.login, account.status) == ("owner-a", seller.login, "active")
        assert account.relogin_reason is None
        assert account.linked_at is not None
        assert account.access_token_expires_at is not None


class TestAccounts:
    def test_every_page_is_followed(
        self, link: AllegroLink, three_accounts: list[str], calls: CallLog
    ) -> None:
        found = [str(account.id) for account in link.accounts(page_size=2)]

        assert sorted(found) == sorted(three_accounts)
        assert calls.count("GET", "/accounts") == 2

    async def test_the_filters_are_applied_by_the_service(
        self, async_link: AsyncAllegroLink, three_accounts: list[str], harness: LinkHarness
    ) -> None:
        await update_account(
            harness.settings, three_accounts[2], status="relogin_required", relogin_reason="grant_revoked"
        )

        by_owner = {a.login async for a in async_link.accounts(owner_id="owner-b")}
        by_login = [a.id async for a in async_link.accounts(login="drugi")]
        needing_relogin = [a async for a in async_link.accounts(status="relogin_required")]

        assert by_owner == {"Drugi", "Trzeci"}
        assert by_login == [uuid.UUID(three_accounts[1])]
        assert [(str(a.id), a.relogin_reason) for a in needing_relogin] == [
            (three_accounts[2], "grant_revoked")
        ]

    async def test_without_the_accounts_scope_the_error_says_forbidden(
        self, service_url: str, harness: LinkHarness, seller: Seller
    ) -> None:
        tokens_only = await new_api_key(harness.settings, "tokens:read")

        async with AsyncAllegroLink(service_url, api_key=tokens_only) as link:
            with pytest.raises(AllegroLinkError) as raised:
                [a async for a in link.accounts()]

        assert (raised.value.code, raised.value.status) == ("forbidden", 403)
