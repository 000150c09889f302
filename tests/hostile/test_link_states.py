"""Attacks on the link flow over real HTTP: forged, truncated, replayed and cross-owner states,
callbacks carrying both a code and an error, and return_to tricks that must never leave the allowlist.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account
from allegro_link.oauth.models import LinkSession
from tests.support.factories import bearer, owner_token
from tests.support.link import RETURN_TO, LinkHarness, returned_params

pytestmark = pytest.mark.slow  # the fake Allegro and the service over real HTTP


def _state(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def _code(url: str) -> str:
    return parse_qs(urlsplit(url).query)["code"][0]


async def _token_calls(harness: LinkHarness) -> int:
    calls: int = (await harness.stats())["token_calls"]["total"]
    return calls


async def _count(harness: LinkHarness, table: type[Account] | type[LinkSession]) -> int:
    engine = create_async_engine(harness.settings.database_url.get_secret_value())
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(table)) or 0)
    finally:
        await engine.dispose()


class TestForgedStates:
    async def test_truncated_extended_and_altered_states_are_400_and_the_real_one_still_works(
        self, harness: LinkHarness
    ) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        state, code = _state(callback_url), _code(callback_url)
        flipped = ("B" if state[0] != "B" else "C") + state[1:]
        forgeries = [
            state[:-1],  # truncated
            state[:20],
            state + "A",  # extended
            flipped,  # one character changed
            state.swapcase(),  # case trick
            quote(state + "=", safe=""),  # padding, percent-encoded
            state + "%20",  # trailing space
            " " + state,
        ]
        for forged in forgeries:
            response = await harness.service.get(f"/oauth/callback?code={code}&state={forged}")
            assert response.status_code == 400, forged
            assert response.headers["content-type"] == "application/problem+json"
            assert "location" not in response.headers
        assert await _token_calls(harness) == 0
        # None of the forgeries consumed the genuine state.
        assert returned_params(await harness.callback(callback_url))["allegro_link"] == "complete"

    async def test_the_state_is_not_echoed_in_any_answer(self, harness: LinkHarness) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        state = _state(callback_url)
        for query in (f"state={state[:-1]}&code=x", f"state={state}&state={state}&code=x"):
            response = await harness.service.get(f"/oauth/callback?{query}")
            assert response.status_code == 400
            assert state[:-1] not in response.text


class TestReplayedStates:
    async def test_concurrent_replays_exchange_the_code_once(self, harness: LinkHarness) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        responses = await asyncio.gather(*(harness.callback(callback_url) for _ in range(8)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [303] + [400] * 7
        assert (await harness.stats())["token_calls"]["authorization_code"] == 1

    async def test_a_replay_after_completion_is_400_and_links_nothing_more(
        self, harness: LinkHarness
    ) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        link_session = returned_params(await harness.callback(callback_url))["link_session"]
        assert (await harness.complete("owner-a", link_session)).status_code == 200
        replay = await harness.callback(callback_url)
        assert replay.status_code == 400
        assert await _count(harness, Account) == 1

    async def test_a_used_link_session_cannot_be_replayed_by_anyone(self, harness: LinkHarness) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        link_session = returned_params(await harness.callback(callback_url))["link_session"]
        results = await asyncio.gather(*(harness.complete("owner-a", link_session) for _ in range(5)))
        assert sorted(r.status_code for r in results) == [200, 404, 404, 404, 404]
        assert await _count(harness, Account) == 1


class TestCrossOwner:
    async def test_an_owner_cannot_start_a_relogin_of_anothers_account(self, harness: LinkHarness) -> None:
        account = (await harness.link("owner-a", "Sprzedawca1")).json()["account"]
        sessions_before = await _count(harness, LinkSession)
        response = await harness.service.post(
            f"/accounts/{account['id']}/authorize",
            json={"return_to": RETURN_TO},
            headers=bearer(owner_token("owner-b")),
        )
        assert response.status_code == 404
        assert await _count(harness, LinkSession) == sessions_before

    async def test_a_relogin_state_completed_by_another_owner_changes_nothing(
        self, harness: LinkHarness
    ) -> None:
        account = (await harness.link("owner-a", "Sprzedawca1")).json()["account"]
        url = await harness.start("owner-a", account_id=account["id"])
        link_session = returned_params(await harness.callback(await harness.consent(url, "Sprzedawca1")))[
            "link_session"
        ]
        stolen = await harness.complete("owner-b", link_session)
        assert stolen.status_code == 404
        assert (await harness.complete("owner-a", link_session)).status_code == 404  # destroyed for good
        listed = await harness.service.get("/accounts", headers=bearer(owner_token("owner-b")))
        assert listed.json()["items"] == []
        assert await _count(harness, Account) == 1


class TestCodeAndError:
    @pytest.mark.parametrize(
        ("error", "reported"), [("access_denied", "access_denied"), ("x", "allegro_error")]
    )
    async def test_code_with_error_is_never_exchanged_and_consumes_the_state(
        self, harness: LinkHarness, error: str, reported: str
    ) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        query = urlsplit(callback_url).query
        for ordered in (f"{query}&error={error}", f"error={error}&{query}"):
            response = await harness.service.get(f"/oauth/callback?{ordered}")
            if response.status_code == 303:
                assert returned_params(response) == {"allegro_link": "error", "error": reported}
            else:  # the second ordering: the state was consumed by the first
                assert response.status_code == 400
        # The code alone, afterwards, is refused too: the state is spent.
        assert (await harness.callback(callback_url)).status_code == 400
        assert await _token_calls(harness) == 0

    async def test_an_empty_code_with_an_error_is_the_error(self, harness: LinkHarness) -> None:
        state = _state(await harness.start("owner-a"))
        response = await harness.service.get(f"/oauth/callback?code=&error=access_denied&state={state}")
        assert returned_params(response)["error"] == "access_denied"

    async def test_a_hostile_error_value_is_not_passed_on(self, harness: LinkHarness) -> None:
        state = _state(await harness.start("owner-a"))
        evil = quote("<script>alert(1)</script>\r\nLocation: https://evil.example/", safe="")
        response = await harness.service.get(f"/oauth/callback?error={evil}&state={state}")
        assert response.status_code == 303
        assert returned_params(response) == {"allegro_link": "error", "error": "allegro_error"}
        assert "evil" not in response.headers["location"]


class TestReturnToEndToEnd:
    async def test_malformed_return_to_is_422_not_500(self, harness: LinkHarness) -> None:
        for return_to in (
            "https://panel.example.com\uff0fallegro/",  # fullwidth solidus: urlsplit raises on it
            "https://panel.example.com\ufe6bevil.example/allegro/",  # small commercial at, NFKC '@'
            "https://[panel.example.com/allegro/",  # unbalanced bracket
            "https://panel.example.com%2f@evil.example/allegro/",
            "https:/\\evil.example/allegro/",
            "//evil.example/allegro/",
        ):
            response = await harness.service.post(
                "/accounts/authorize", json={"return_to": return_to}, headers=bearer(owner_token("owner-a"))
            )
            assert response.status_code == 422, (return_to, response.text)
            assert response.json()["code"] == "invalid_return_to"
        assert await _count(harness, LinkSession) == 0

    async def test_a_return_to_carrying_callback_parameters_is_refused(self, harness: LinkHarness) -> None:
        # Started so, a link would read as cancelled in the victim's panel while the starter completes it.
        for query in ("allegro_link=error&error=access_denied", "%61llegro_link=complete", "LINK_SESSION=x"):
            response = await harness.service.post(
                "/accounts/authorize",
                json={"return_to": f"https://panel.example.com/allegro/konta?{query}"},
                headers=bearer(owner_token("owner-a")),
            )
            assert response.status_code == 422, (query, response.text)
            assert response.json()["code"] == "invalid_return_to"
        assert await _count(harness, LinkSession) == 0

    async def test_the_redirect_goes_exactly_to_the_allowed_return_to(self, harness: LinkHarness) -> None:
        return_to = "https://PANEL.example.com:443/allegro/konta?tab=2#lista"
        callback_url = await harness.consent(await harness.start("owner-a", return_to=return_to), "Login")
        location = (await harness.callback(callback_url)).headers["location"]
        parts = urlsplit(location)
        assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
            "https",
            "panel.example.com",
            443,
            "/allegro/konta",
        )
        assert parts.fragment == "lista"
        assert parse_qs(parts.query)["tab"] == ["2"]
        assert parse_qs(parts.query)["allegro_link"] == ["complete"]
