"""Typed errors from the service's problem bodies; bounded retries within the caller's deadline."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from allegro_link_client import (
    AccountNotFound,
    AllegroLink,
    AllegroLinkError,
    AllegroLinkUnavailable,
    AsyncAllegroLink,
    ReloginRequired,
)

from tests.client.conftest import Seller
from tests.client.support import AsyncCountingTransport, CallLog, CountingTransport, FakeControls
from tests.support.accounts import update_account
from tests.support.link import LinkHarness
from tests.support.live import free_port


class TestProblems:
    def test_an_unknown_account_raises_account_not_found(self, link: AllegroLink, seller: Seller) -> None:
        unknown = uuid.uuid4()

        with pytest.raises(AccountNotFound) as from_token:
            link.token(unknown)
        with pytest.raises(AccountNotFound):
            link.account(unknown)

        assert (from_token.value.code, from_token.value.status) == ("not_found", 404)

    async def test_an_account_that_needs_a_relogin_raises_relogin_required(
        self, async_link: AsyncAllegroLink, seller: Seller, harness: LinkHarness
    ) -> None:
        await update_account(
            harness.settings, seller.account_id, status="relogin_required", relogin_reason="refresh_rejected"
        )

        with pytest.raises(ReloginRequired) as raised:
            await async_link.token(seller.account_id)

        assert raised.value.account_id == uuid.UUID(seller.account_id)
        assert raised.value.reason == "refresh_rejected"
        assert isinstance(raised.value, AllegroLinkError)

    def test_a_wrong_api_key_is_an_allegro_link_error_with_the_problem_code(
        self, service_url: str, seller: Seller
    ) -> None:
        with (
            AllegroLink(service_url, api_key="alk_not-a-key") as link,
            pytest.raises(AllegroLinkError) as raised,
        ):
            link.token(seller.account_id)

        assert (raised.value.code, raised.value.status) == ("unauthenticated", 401)
        assert "alk_not-a-key" not in str(raised.value)


class TestOutage:
    async def _stale_token_and_allegro_down(
        self, harness: LinkHarness, seller: Seller, fake: FakeControls, retry_after: int
    ) -> None:
        # The held token has 30 s left, too little to hand out, and Allegro answers every refresh 503:
        # the service answers 503 `allegro_unavailable` with Allegro's Retry-After.
        expires = datetime.now(UTC) + timedelta(seconds=30)
        await update_account(harness.settings, seller.account_id, access_token_expires_at=expires)
        fake.fault("token", status=503, count=1000, retry_after=retry_after)

    async def test_503s_are_retried_after_retry_after_then_raise_unavailable(
        self, service_url: str, api_key: str, seller: Seller, harness: LinkHarness, fake: FakeControls
    ) -> None:
        await self._stale_token_and_allegro_down(harness, seller, fake, retry_after=1)
        calls = CallLog()

        # A deadline far beyond three attempts: here the attempts are the bound (the deadline has its
        # own tests below), which keeps the count exact on a slow machine.
        async with AsyncAllegroLink(
            service_url,
            api_key=api_key,
            deadline=60,
            max_attempts=3,
            transport=AsyncCountingTransport(calls),
        ) as link:
            with pytest.raises(AllegroLinkUnavailable) as raised:
                await link.token(seller.account_id)

        assert raised.value.retry_after == 1
        assert (raised.value.code, raised.value.status) == ("allegro_unavailable", 503)
        assert calls.token_fetches() == 3

    async def test_a_retry_after_beyond_the_deadline_is_not_waited_for(
        self, service_url: str, api_key: str, seller: Seller, harness: LinkHarness, fake: FakeControls
    ) -> None:
        await self._stale_token_and_allegro_down(harness, seller, fake, retry_after=30)
        calls = CallLog()

        async with AsyncAllegroLink(
            service_url, api_key=api_key, deadline=20, transport=AsyncCountingTransport(calls)
        ) as link:
            with pytest.raises(AllegroLinkUnavailable) as raised:
                await link.token(seller.account_id)

        assert raised.value.retry_after == 30
        assert calls.token_fetches() == 1

    async def test_the_service_recovering_within_the_deadline_is_invisible_to_the_caller(
        self, service_url: str, api_key: str, seller: Seller, harness: LinkHarness, fake: FakeControls
    ) -> None:
        expires = datetime.now(UTC) + timedelta(seconds=30)
        await update_account(harness.settings, seller.account_id, access_token_expires_at=expires)
        fake.fault("token", status=503, count=1, retry_after=1)
        calls = CallLog()

        async with AsyncAllegroLink(
            service_url, api_key=api_key, deadline=30, transport=AsyncCountingTransport(calls)
        ) as link:
            token = await link.token(seller.account_id)

        assert token.valid_for() > 300
        assert calls.token_fetches() == 2

    def test_connection_errors_are_retried_max_attempts_times(self) -> None:
        calls = CallLog()
        nowhere = f"http://127.0.0.1:{free_port()}"

        with (
            AllegroLink(
                nowhere, api_key="alk_x", deadline=30, max_attempts=3, transport=CountingTransport(calls)
            ) as link,
            pytest.raises(AllegroLinkUnavailable) as raised,
        ):
            link.token(uuid.uuid4())

        assert (raised.value.code, raised.value.retry_after) == ("unreachable", None)
        assert isinstance(raised.value.__cause__, httpx.ConnectError)
        assert calls.token_fetches() == 3

    def test_the_deadline_stops_retries_before_max_attempts(self) -> None:
        calls = CallLog()
        nowhere = f"http://127.0.0.1:{free_port()}"

        with (
            AllegroLink(
                nowhere, api_key="alk_x", deadline=0.5, max_attempts=50, transport=CountingTransport(calls)
            ) as link,
            pytest.raises(AllegroLinkUnavailable),
        ):
            link.token(uuid.uuid4())

        # Backoffs of at least 0.1, 0.2 and 0.4 s: a fourth attempt would start after the deadline.
        assert 1 <= calls.token_fetches() <= 3
