"""Linking and re-linking accounts end to end (CONTRACT section 5: callback and completion tables)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account, AccountEvent, AccountStatus, ReloginReason
from allegro_link.db import utcnow
from allegro_link.oauth.models import LinkSession
from tests.support.factories import bearer, owner_token
from tests.support.link import RETURN_TO, LinkHarness, returned_params


async def _scalar(url: str, statement: object) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            return (await connection.execute(statement)).scalar()  # type: ignore[call-overload]
    finally:
        await engine.dispose()


async def _execute(url: str, statement: object) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(statement)  # type: ignore[call-overload]
    finally:
        await engine.dispose()


def _db(harness: LinkHarness) -> str:
    return harness.settings.database_url.get_secret_value()


class TestLinking:
    async def test_new_account_is_linked_and_active(self, harness: LinkHarness) -> None:
        response = await harness.link("owner-a", "Sprzedawca1")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["result"] == "linked"
        account = body["account"]
        assert account["owner_id"] == "owner-a"
        assert account["login"] == "Sprzedawca1"
        assert account["status"] == "active"
        assert account["relogin_reason"] is None
        assert account["allegro_user_id"]
        assert (
            account["linked_at"]
            and account["refresh_token_expires_at"]
            and account["access_token_expires_at"]
        )

        listed = await harness.service.get("/accounts", headers=bearer(owner_token("owner-a")))
        assert [a["id"] for a in listed.json()["items"]] == [account["id"]]
        assert listed.json()["relogin_required_count"] == 0

    async def test_linking_the_same_allegro_user_again_relinks_without_duplicate(
        self, harness: LinkHarness
    ) -> None:
        first = (await harness.link("owner-a", "Sprzedawca1")).json()
        second = await harness.link("owner-a", "Sprzedawca1")
        assert second.status_code == 200
        assert second.json()["result"] == "relinked"
        assert second.json()["account"]["id"] == first["account"]["id"]
        assert await _scalar(_db(harness), select(func.count()).select_from(Account)) == 1

    async def test_two_owners_may_link_the_same_allegro_user(self, harness: LinkHarness) -> None:
        a = (await harness.link("owner-a", "Wspolny")).json()["account"]
        b = (await harness.link("owner-b", "Wspolny")).json()["account"]
        assert a["id"] != b["id"]
        assert a["allegro_user_id"] == b["allegro_user_id"]

    async def test_tokens_are_stored_encrypted(self, harness: LinkHarness) -> None:
        await harness.link("owner-a", "Sprzedawca1")
        dump = await _scalar(
            _db(harness),
            text(
                "SELECT string_agg(coalesce(encode(access_token_ciphertext, 'escape'), '') || "
                "coalesce(encode(refresh_token_ciphertext, 'escape'), ''), '') FROM accounts"
            ),
        )
        assert isinstance(dump, str) and dump
        assert "eyJ" not in dump  # no JWT (Allegro tokens are JWTs) in plain text

    async def test_every_link_writes_the_event_log(self, harness: LinkHarness) -> None:
        await harness.link("owner-a", "Sprzedawca1")
        await harness.link("owner-a", "Sprzedawca1")
        kinds = await _scalar(_db(harness), select(func.string_agg(AccountEvent.type, ",")))
        assert kinds == "account.linked,account.relinked"


class TestRelogin:
    async def test_relogin_as_the_same_user_relinks(self, harness: LinkHarness) -> None:
        account = (await harness.link("owner-a", "Sprzedawca1")).json()["account"]
        await _execute(
            _db(harness),
            update(Account)
            .where(Account.id == uuid.UUID(account["id"]))
            .values(status=AccountStatus.RELOGIN_REQUIRED, relogin_reason=ReloginReason.GRANT_REVOKED),
        )
        response = await harness.link("owner-a", "Sprzedawca1", account_id=account["id"])
        assert response.status_code == 200
        assert response.json()["result"] == "relinked"
        assert response.json()["account"]["status"] == "active"
        assert response.json()["account"]["id"] == account["id"]

    async def test_relogin_as_another_user_is_a_mismatch_and_changes_nothing(
        self, harness: LinkHarness
    ) -> None:
        account = (await harness.link("owner-a", "Sprzedawca1")).json()["account"]
        response = await harness.link("owner-a", "KtosInny", account_id=account["id"])
        assert response.status_code == 409
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["code"] == "account_mismatch"
        assert (problem["expected_login"], problem["actual_login"]) == ("Sprzedawca1", "KtosInny")
        after = (
            await harness.service.get(f"/accounts/{account['id']}", headers=bearer(owner_token("owner-a")))
        ).json()
        assert after == account
        assert await _scalar(_db(harness), select(func.count()).select_from(Account)) == 1

    async def test_legacy_account_is_relinked_by_login_ignoring_case(self, harness: LinkHarness) -> None:
        legacy_id = await _insert_legacy(harness, "owner-a", "StaryLogin")
        response = await harness.link("owner-a", "staryLOGIN")
        assert response.status_code == 200
        assert response.json()["result"] == "relinked"
        assert response.json()["account"]["id"] == str(legacy_id)
        assert response.json()["account"]["status"] == "active"

    async def test_legacy_relogin_with_another_login_is_a_mismatch(self, harness: LinkHarness) -> None:
        legacy_id = await _insert_legacy(harness, "owner-a", "StaryLogin")
        response = await harness.link("owner-a", "Nowy", account_id=str(legacy_id))
        assert response.status_code == 409
        assert response.json()["expected_login"] == "StaryLogin"

    async def test_relogin_of_another_owners_account_is_404(self, harness: LinkHarness) -> None:
        account = (await harness.link("owner-a", "Sprzedawca1")).json()["account"]
        response = await harness.service.post(
            f"/accounts/{account['id']}/authorize",
            json={"return_to": RETURN_TO},
            headers=bearer(owner_token("owner-b")),
        )
        assert response.status_code == 404


async def _insert_legacy(harness: LinkHarness, owner: str, login: str) -> uuid.UUID:
    account_id = uuid.uuid4()
    await _execute(
        _db(harness),
        insert(Account).values(
            id=account_id,
            owner_id=owner,
            login=login,
            status="relogin_required",
            relogin_reason="legacy_account",
            status_changed_at=utcnow(),
        ),
    )
    return account_id


class TestCallbackOutcomes:
    async def test_user_cancelled(self, harness: LinkHarness) -> None:
        state = _state(await harness.start("owner-a"))
        response = await harness.service.get(f"/oauth/callback?error=access_denied&state={state}")
        assert response.status_code == 303
        assert returned_params(response) == {"allegro_link": "error", "error": "access_denied"}

    async def test_other_errors_are_passed_on_as_allegro_error(self, harness: LinkHarness) -> None:
        state = _state(await harness.start("owner-a"))
        response = await harness.service.get(f"/oauth/callback?error=server_error&state={state}")
        assert returned_params(response)["error"] == "allegro_error"

    async def test_code_and_error_together_is_never_exchanged(self, harness: LinkHarness) -> None:
        state = _state(await harness.start("owner-a"))
        response = await harness.service.get(f"/oauth/callback?code=abc&error=access_denied&state={state}")
        assert returned_params(response)["error"] == "access_denied"
        assert (await harness.stats())["token_calls"]["total"] == 0

    async def test_expired_state_answers_state_expired_every_time(self, harness: LinkHarness) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        await _execute(_db(harness), update(LinkSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        for _ in range(2):
            response = await harness.callback(callback_url)
            assert response.status_code == 303
            assert returned_params(response) == {"allegro_link": "error", "error": "state_expired"}
        assert (await harness.stats())["token_calls"]["total"] == 0

    async def test_allegro_down_during_exchange(self, harness: LinkHarness) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        await harness.fake.post(
            "/__fake__/faults", json={"endpoint": "token", "kind": "status", "status": 503, "count": 1}
        )
        response = await harness.callback(callback_url)
        assert returned_params(response) == {"allegro_link": "error", "error": "allegro_unavailable"}

    async def test_allegro_rate_limit_during_me(self, harness: LinkHarness) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        await harness.fake.post(
            "/__fake__/faults", json={"endpoint": "me", "kind": "status", "status": 429, "count": 1}
        )
        response = await harness.callback(callback_url)
        assert returned_params(response)["error"] == "allegro_unavailable"

    async def test_expired_code_is_exchange_rejected(self, harness: LinkHarness) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        await harness.fake.post("/__fake__/clock", json={"advance_seconds": 11})
        response = await harness.callback(callback_url)
        assert returned_params(response) == {"allegro_link": "error", "error": "exchange_rejected"}

    async def test_callback_responses_are_not_cached_or_referred(self, harness: LinkHarness) -> None:
        state = _state(await harness.start("owner-a"))
        for query in (f"error=access_denied&state={state}", "code=x&state=" + "A" * 43):
            response = await harness.service.get(f"/oauth/callback?{query}")
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["cache-control"] == "no-store"


def _state(authorization_url: str) -> str:
    return parse_qs(urlsplit(authorization_url).query)["state"][0]


class TestBadStates:
    @pytest.mark.parametrize(
        "query",
        [
            "code=abc&state=" + "A" * 43,  # unknown
            "code=abc&state=short",  # malformed
            "code=abc",  # missing
            "code=abc&state=" + "%00" * 3,  # NUL bytes
            "code=abc&state=" + "A" * 4096,  # oversized
        ],
    )
    async def test_unusable_state_is_400_without_calling_allegro(
        self, harness: LinkHarness, query: str
    ) -> None:
        response = await harness.service.get(f"/oauth/callback?{query}")
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert "location" not in response.headers
        assert "abc" not in response.text
        assert (await harness.stats())["token_calls"]["total"] == 0

    async def test_state_or_code_given_twice_is_400(self, harness: LinkHarness) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        query = urlsplit(callback_url).query
        state = parse_qs(query)["state"][0]
        for doubled in (f"{query}&state={state}", f"{query}&code=other"):
            response = await harness.service.get(f"/oauth/callback?{doubled}")
            assert response.status_code == 400
        assert (await harness.stats())["token_calls"]["total"] == 0
        # The state was not consumed by the refused attempts: the genuine callback still works.
        assert returned_params(await harness.callback(callback_url))["allegro_link"] == "complete"

    async def test_replayed_state_is_400_without_calling_allegro(self, harness: LinkHarness) -> None:
        callback_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
        assert (await harness.callback(callback_url)).status_code == 303
        calls = (await harness.stats())["token_calls"]["total"]
        replay = await harness.callback(callback_url)
        assert replay.status_code == 400
        assert (await harness.stats())["token_calls"]["total"] == calls


class TestCompletion:
    async def _callback_session(self, harness: LinkHarness, owner: str) -> str:
        callback = await harness.callback(await harness.consent(await harness.start(owner), "Sprzedawca1"))
        return returned_params(callback)["link_session"]

    async def test_completion_by_another_owner_destroys_the_session(self, harness: LinkHarness) -> None:
        link_session = await self._callback_session(harness, "owner-a")
        assert (await harness.complete("owner-b", link_session)).status_code == 404
        assert (await harness.complete("owner-a", link_session)).status_code == 404
        assert await _scalar(_db(harness), select(func.count()).select_from(Account)) == 0
        held = await _scalar(
            _db(harness), select(func.count()).where(LinkSession.refresh_token_ciphertext.is_not(None))
        )
        assert held == 0

    async def test_completion_is_single_use(self, harness: LinkHarness) -> None:
        link_session = await self._callback_session(harness, "owner-a")
        assert (await harness.complete("owner-a", link_session)).status_code == 200
        assert (await harness.complete("owner-a", link_session)).status_code == 404

    async def test_completion_expires(self, harness: LinkHarness) -> None:
        link_session = await self._callback_session(harness, "owner-a")
        await _execute(
            _db(harness), update(LinkSession).values(completion_expires_at=utcnow() - timedelta(seconds=1))
        )
        assert (await harness.complete("owner-a", link_session)).status_code == 404

    @pytest.mark.parametrize("value", ["", "x" * 4096, "abc\x00", "A" * 43])
    async def test_bogus_link_sessions_are_4xx(self, harness: LinkHarness, value: str) -> None:
        response = await harness.complete("owner-a", value)
        assert response.status_code in (404, 422)
        assert value not in response.text or value == ""


class TestAuthorize:
    async def test_authorization_url_has_pkce_and_prompt_confirm(self, harness: LinkHarness) -> None:
        response = await harness.service.post(
            "/accounts/authorize", json={"return_to": RETURN_TO}, headers=bearer(owner_token("o"))
        )
        assert response.status_code == 201
        query = parse_qs(urlsplit(response.json()["authorization_url"]).query)
        assert query["prompt"] == ["confirm"]
        assert query["code_challenge_method"] == ["S256"]
        assert query["redirect_uri"] == [harness.settings.redirect_uri]
        assert len(query["state"][0]) >= 43
        state_hash = await _scalar(_db(harness), select(LinkSession.state_hash))
        assert isinstance(state_hash, bytes) and query["state"][0].encode() not in state_hash

    async def test_return_to_outside_the_allowlist_is_422(self, harness: LinkHarness) -> None:
        response = await harness.service.post(
            "/accounts/authorize",
            json={"return_to": "https://panel.example.com@evil.example/allegro/"},
            headers=bearer(owner_token("o")),
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_return_to"
        assert await _scalar(_db(harness), select(func.count()).select_from(LinkSession)) == 0

    async def test_without_credentials_is_401(self, harness: LinkHarness) -> None:
        response = await harness.service.post("/accounts/authorize", json={"return_to": RETURN_TO})
        assert response.status_code == 401

    async def test_validation_errors_do_not_echo_input(self, harness: LinkHarness) -> None:
        response = await harness.service.post(
            "/accounts/authorize",
            json={"return_to": 12345, "secret": "s3cr3t-value"},
            headers=bearer(owner_token("o")),
        )
        assert response.status_code == 422
        assert "s3cr3t-value" not in response.text


class TestBrowserJourney:
    async def test_html_login_and_consent_pages(self, harness: LinkHarness) -> None:
        """The whole flow through the fake's HTML pages, as a browser without JavaScript would do it."""
        authorization_url = await harness.start("owner-a")
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as browser:
            page = await browser.get(authorization_url)
            assert page.status_code == 200
            assert "Zaloguj" in page.text
            callback_url = await _submit_forms(browser, page, "Sprzedawca1")
        assert callback_url.startswith(harness.settings.redirect_uri)
        callback = await harness.callback(callback_url)
        params = returned_params(callback)
        assert params["allegro_link"] == "complete"
        assert (await harness.complete("owner-a", params["link_session"])).json()["result"] == "linked"


async def _submit_forms(browser: httpx.AsyncClient, page: httpx.Response, login: str) -> str:
    """Fill the login form, then press "Powiąż konto"; returns where the fake redirects."""
    import re
    from html import unescape

    for _ in range(4):
        if page.status_code in (302, 303):
            location = str(page.url.join(page.headers["location"]))
            if not location.startswith(f"{page.url.scheme}://{page.url.netloc.decode()}"):
                return location  # leaving the fake: back to our redirect URI
            page = await browser.get(location)
            continue
        form = re.search(r"<form[^>]*action=\"([^\"]*)\"[^>]*>(.*?)</form>", page.text, re.S)
        assert form, page.text
        action = unescape(form.group(1))
        fields = {
            unescape(m.group(1)): unescape(m.group(2))
            for m in re.finditer(r"<input[^>]*name=\"([^\"]+)\"[^>]*value=\"([^\"]*)\"", form.group(2))
        }
        if "login" in form.group(2) and 'name="login"' in form.group(2):
            fields["login"] = login
            fields["password"] = "x"
        buttons = re.findall(
            r"<button[^>]*name=\"([^\"]+)\"[^>]*value=\"([^\"]*)\"[^>]*>([^<]*)</button>", page.text
        )
        for name, value, label in buttons:
            if "Powiąż" in label or "Zaloguj" in label:
                fields[name] = value
        target = str(page.url.join(action))
        page = await browser.post(target, data=fields)
    raise AssertionError("the fake Allegro never redirected back")
