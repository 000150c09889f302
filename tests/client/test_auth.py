"""`link.auth()`: a valid token on every call to Allegro; on a 401 one report, one retry, no more."""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx
import pytest
from allegro_link_client import AllegroLink, AsyncAllegroLink, ReloginRequired, RequestNotReplayable

from tests.client.conftest import Seller
from tests.client.support import ALLEGRO_JSON, CallLog, FakeControls


class TestRejectedToken:
    def test_a_401_reports_the_token_once_and_retries_the_request_once(
        self, link: AllegroLink, seller: Seller, fake_url: str, fake: FakeControls, calls: CallLog
    ) -> None:
        old = link.token(seller.account_id)
        fake.expire_access_tokens(seller.login)
        me_before = fake.me_calls()

        with httpx.Client(base_url=fake_url, auth=link.auth(seller.account_id)) as allegro:
            response = allegro.get("/me", headers=ALLEGRO_JSON)

        assert response.status_code == 200
        assert calls.refreshes() == [{"rejected_token": old.access_token}]
        assert fake.refreshes() == 1  # the service refreshed once, the client never did itself
        assert fake.me_calls() - me_before == 2  # the refused call and its one retry
        assert link.token(seller.account_id).access_token != old.access_token

    async def test_the_async_flow_does_the_same(
        self, async_link: AsyncAllegroLink, seller: Seller, fake_url: str, fake: FakeControls, calls: CallLog
    ) -> None:
        old = await async_link.token(seller.account_id)
        fake.expire_access_tokens(seller.login)

        async with httpx.AsyncClient(base_url=fake_url, auth=async_link.auth(seller.account_id)) as allegro:
            response = await allegro.get("/me", headers=ALLEGRO_JSON)

        assert response.status_code == 200
        assert calls.refreshes() == [{"rejected_token": old.access_token}]
        assert fake.refreshes() == 1

    def test_a_second_401_is_returned_to_the_caller_as_it_is(
        self, link: AllegroLink, seller: Seller, fake_url: str, fake: FakeControls, calls: CallLog
    ) -> None:
        link.token(seller.account_id)
        me_before = fake.me_calls()
        fake.fault("me", status=401, count=5)

        with httpx.Client(base_url=fake_url, auth=link.auth(seller.account_id)) as allegro:
            response = allegro.get("/me", headers=ALLEGRO_JSON)

        assert response.status_code == 401
        assert len(calls.refreshes()) == 1
        assert fake.me_calls() - me_before == 2

    async def test_concurrent_401s_with_one_token_cause_one_report(
        self, async_link: AsyncAllegroLink, seller: Seller, fake_url: str, fake: FakeControls, calls: CallLog
    ) -> None:
        await async_link.token(seller.account_id)
        fake.expire_access_tokens(seller.login)

        async with httpx.AsyncClient(
            base_url=fake_url, auth=async_link.auth(seller.account_id), timeout=30
        ) as allegro:
            responses = await asyncio.gather(*(allegro.get("/me", headers=ALLEGRO_JSON) for _ in range(20)))

        assert [r.status_code for r in responses] == [200] * 20
        assert len(calls.refreshes()) == 1
        assert fake.refreshes() == 1


class TestStreamedBody:
    def test_a_streamed_body_is_not_sent_twice_and_the_token_is_replaced_for_the_next_try(
        self, link: AllegroLink, seller: Seller, fake_url: str, fake: FakeControls, calls: CallLog
    ) -> None:
        old = link.token(seller.account_id)
        fake.expire_access_tokens(seller.login)
        me_before = fake.me_calls()

        with (
            httpx.Client(base_url=fake_url, auth=link.auth(seller.account_id)) as allegro,
            pytest.raises(RequestNotReplayable) as raised,
        ):
            allegro.request("GET", "/me", headers=ALLEGRO_JSON, content=iter([b"chunk"]))

        assert fake.me_calls() - me_before == 1
        assert old.access_token not in str(raised.value)
        assert link.token(seller.account_id).access_token != old.access_token
        assert len(calls.refreshes()) == 1

    def test_a_body_given_as_bytes_is_sent_again(
        self, link: AllegroLink, seller: Seller, fake_url: str, fake: FakeControls
    ) -> None:
        link.token(seller.account_id)
        fake.expire_access_tokens(seller.login)
        me_before = fake.me_calls()

        with httpx.Client(base_url=fake_url, auth=link.auth(seller.account_id)) as allegro:
            response = allegro.request("GET", "/me", headers=ALLEGRO_JSON, content=b"chunk")

        assert response.status_code == 200
        assert fake.me_calls() - me_before == 2


class TestRelogin:
    def test_a_revoked_grant_raises_relogin_required_with_the_reason(
        self, link: AllegroLink, seller: Seller, fake_url: str, fake: FakeControls
    ) -> None:
        old = link.token(seller.account_id)
        fake.revoke(seller.login)

        with (
            httpx.Client(base_url=fake_url, auth=link.auth(seller.account_id)) as allegro,
            pytest.raises(ReloginRequired) as raised,
        ):
            allegro.get("/me", headers=ALLEGRO_JSON)

        assert raised.value.account_id == uuid.UUID(seller.account_id)
        assert raised.value.reason == "grant_revoked"
        assert all(old.access_token not in text for text in (str(raised.value), repr(raised.value)))
        assert link.account(seller.account_id).status == "relogin_required"

    def test_after_relogin_required_the_held_token_is_not_served_any_more(
        self, link: AllegroLink, seller: Seller, fake: FakeControls, calls: CallLog
    ) -> None:
        old = link.token(seller.account_id)
        fake.revoke(seller.login)
        with pytest.raises(ReloginRequired):
            link.refresh(seller.account_id, rejected_token=old)

        with pytest.raises(ReloginRequired) as raised:
            link.token(seller.account_id)

        assert raised.value.reason == "grant_revoked"
        assert calls.token_fetches() == 2


class TestSecrecyInLogs:
    def test_no_token_or_api_key_in_any_log_line_of_a_refused_and_retried_call(
        self,
        link: AllegroLink,
        seller: Seller,
        fake_url: str,
        fake: FakeControls,
        api_key: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        # The service's own logging set-up (run by other tests in this process) quiets these two to
        # WARNING; this test wants every line they would write.
        for library in ("httpx", "httpcore"):
            caplog.set_level(logging.DEBUG, logger=library)
        old = link.token(seller.account_id)
        fake.expire_access_tokens(seller.login)

        with httpx.Client(base_url=fake_url, auth=link.auth(seller.account_id)) as allegro:
            assert allegro.get("/me", headers=ALLEGRO_JSON).status_code == 200
        new = link.token(seller.account_id)

        # The client's own records and httpx's (the service and the fake log in this process too).
        ours = [
            r for r in caplog.records if r.name.split(".")[0] in ("allegro_link_client", "httpx", "httpcore")
        ]
        logged = "\n".join(record.getMessage() for record in ours)
        assert ours  # httpx did log the calls
        assert all(secret not in logged for secret in (old.access_token, new.access_token, api_key))


class TestWrongPairing:
    def test_the_async_links_auth_refuses_a_sync_client_clearly(
        self, async_link: AsyncAllegroLink, seller: Seller, fake_url: str
    ) -> None:
        with (
            httpx.Client(base_url=fake_url, auth=async_link.auth(seller.account_id)) as allegro,
            pytest.raises(TypeError, match="AsyncClient"),
        ):
            allegro.get("/me")
