"""The /__fake__/ test controls: users, faults, clock, stats, reset, clients and the authorize shortcut."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.fake_allegro.conftest import MakeApp
from tests.fake_allegro.helpers import (
    CLIENT_ID,
    OAUTH_JSON,
    REDIRECT_URI,
    TOKEN_PATH,
    basic,
    exchange,
    get_code,
    me,
    new_pkce,
    refresh,
    tokens_for,
)
from tests.support.waiting import until


async def add_fault(http: httpx.AsyncClient, **fault: object) -> None:
    response = await http.post("/__fake__/faults", json=fault)
    assert response.status_code == 201, response.text


async def test_controls_are_404_when_disabled(make_app: MakeApp) -> None:
    app = make_app(controls_enabled=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://allegro.pl"
    ) as http:
        for method, path in [
            ("GET", "/__fake__/stats"),
            ("POST", "/__fake__/reset"),
            ("POST", "/__fake__/faults"),
        ]:
            assert (await http.request(method, path, json={})).status_code == 404
        # The OAuth side is unaffected.
        assert (await http.post(TOKEN_PATH, data={}, headers=basic())).status_code == 400


class TestUsers:
    async def test_a_user_can_be_created_with_a_chosen_id(self, http: httpx.AsyncClient) -> None:
        response = await http.post("/__fake__/users", json={"login": "seller", "id": "1234567"})

        assert response.status_code == 201
        assert response.json()["id"] == "1234567"
        assert response.json()["login"] == "seller"

    async def test_logins_ignore_case_and_creation_is_idempotent(self, http: httpx.AsyncClient) -> None:
        created = await http.post("/__fake__/users", json={"login": "Seller"})

        again = await http.post("/__fake__/users", json={"login": "SELLER"})

        assert again.status_code == 200
        assert again.json() == created.json()

    async def test_conflicting_ids_are_409(self, http: httpx.AsyncClient) -> None:
        await http.post("/__fake__/users", json={"login": "first", "id": "1000"})

        taken = await http.post("/__fake__/users", json={"login": "second", "id": "1000"})
        contradicting = await http.post("/__fake__/users", json={"login": "first", "id": "2000"})

        assert taken.status_code == 409
        assert contradicting.status_code == 409

    async def test_a_login_gets_the_same_numeric_id_in_every_instance(self, make_app: MakeApp) -> None:
        ids = []
        for _ in range(2):
            app = make_app()
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="https://x"
            ) as http:
                ids.append((await http.post("/__fake__/users", json={"login": "demo-seller"})).json()["id"])

        assert ids[0] == ids[1]
        assert ids[0].isdigit()


class TestFaults:
    async def test_the_next_two_token_calls_get_503_then_it_works(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http)
        await add_fault(http, endpoint="token", kind="status", status=503, count=2)

        first = await refresh(http, tokens["refresh_token"])
        second = await refresh(http, tokens["refresh_token"])
        third = await refresh(http, tokens["refresh_token"])

        assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
        assert first.headers["content-type"].startswith("text/html")
        # The failed calls did not use the refresh token: its grace has not started.
        assert (await refresh(http, tokens["refresh_token"])).status_code == 200

    async def test_429_carries_allegros_error_and_retry_after(self, http: httpx.AsyncClient) -> None:
        await add_fault(http, endpoint="token", kind="status", status=429, retry_after=30)

        response = await exchange(http, await get_code(http))

        assert response.status_code == 429
        assert response.headers["retry-after"] == "30"
        assert response.headers["content-type"] == OAUTH_JSON
        assert response.json()["error"] == "token_creation_rate_limit_exceeded"

    async def test_a_500_on_me_has_a_json_body(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http)
        await add_fault(http, endpoint="me", kind="status", status=500)

        failed = await me(http, tokens["access_token"])

        assert failed.status_code == 500
        assert failed.json()["errors"][0]["code"] == "InternalServerErrorException"
        assert (await me(http, tokens["access_token"])).status_code == 200

    async def test_delay_answers_normally_after_sleeping(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http)
        await add_fault(http, endpoint="me", kind="delay", delay_seconds=0.2)

        started = time.monotonic()
        response = await me(http, tokens["access_token"])

        assert time.monotonic() - started >= 0.2
        assert response.status_code == 200

    async def test_a_delayed_call_does_not_hold_up_the_others(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http)
        await add_fault(http, endpoint="me", kind="delay", delay_seconds=0.3)
        slow = asyncio.create_task(me(http, tokens["access_token"]))
        await asyncio.sleep(0.05)

        started = time.monotonic()
        fast = await me(http, tokens["access_token"])

        assert time.monotonic() - started < 0.2
        assert fast.status_code == 200
        assert (await slow).status_code == 200

    async def test_hold_keeps_the_call_until_released(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http)
        await add_fault(http, endpoint="me", kind="hold", count=2)
        held = [asyncio.create_task(me(http, tokens["access_token"])) for _ in range(2)]

        async def both_arrived() -> bool:
            return bool((await http.get("/__fake__/stats")).json()["me_calls"] == 2)

        await until(both_arrived, within=10, what="the two calls")

        assert (await me(http, tokens["access_token"])).status_code == 200  # only those two wait
        assert not any(call.done() for call in held)
        assert (await http.post("/__fake__/faults/release")).status_code == 204
        assert [(await call).status_code for call in held] == [200, 200]

    async def test_hold_lets_go_after_delay_seconds_without_a_release(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http)
        await add_fault(http, endpoint="me", kind="hold", delay_seconds=0.2)

        started = time.monotonic()
        response = await me(http, tokens["access_token"])

        assert time.monotonic() - started >= 0.2
        assert response.status_code == 200

    async def test_reset_drops_the_connection(self, http: httpx.AsyncClient) -> None:
        await add_fault(http, endpoint="token", kind="reset")

        with pytest.raises(httpx.RemoteProtocolError):
            await exchange(http, await get_code(http))

    async def test_truncate_processes_the_call_but_cuts_the_answer(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http)
        await add_fault(http, endpoint="token", kind="truncate")

        cut = await refresh(http, tokens["refresh_token"])

        assert cut.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            cut.json()
        assert cut.content and b"access_token" in cut.content[:40]
        # The refresh happened: the old access token is dead, the old refresh token in its grace.
        assert (await me(http, tokens["access_token"])).status_code == 401
        assert (await refresh(http, tokens["refresh_token"])).status_code == 200

    async def test_faults_queue_up_in_order_and_can_be_cleared(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http)
        await add_fault(http, endpoint="me", kind="status", status=502)
        await add_fault(http, endpoint="me", kind="status", status=504, count=5)

        assert (await me(http, tokens["access_token"])).status_code == 502
        assert (await me(http, tokens["access_token"])).status_code == 504
        assert (await http.delete("/__fake__/faults")).status_code == 204
        assert (await me(http, tokens["access_token"])).status_code == 200

    @pytest.mark.parametrize(
        "fault",
        [
            {"endpoint": "orders", "kind": "status"},
            {"endpoint": "token", "kind": "explode"},
            {"endpoint": "token", "kind": "status", "count": 0},
            {"endpoint": "token", "kind": "status", "status": 200},
        ],
    )
    async def test_a_malformed_fault_is_422(self, http: httpx.AsyncClient, fault: dict[str, object]) -> None:
        assert (await http.post("/__fake__/faults", json=fault)).status_code == 422


async def test_stats_count_calls_by_grant_type_user_and_endpoint(http: httpx.AsyncClient) -> None:
    tokens = await tokens_for(http, "counted")
    other = await tokens_for(http, "other")
    await add_fault(http, endpoint="token", kind="status", status=503)
    await refresh(http, tokens["refresh_token"])  # faulted, still counted
    renewed = (await refresh(http, tokens["refresh_token"])).json()
    await refresh(http, other["refresh_token"])
    await me(http, renewed["access_token"])
    await me(http, tokens["access_token"])  # killed by the refresh: a call, not a use
    await http.post(TOKEN_PATH, data={}, headers=basic())

    stats = (await http.get("/__fake__/stats")).json()

    assert stats == {
        "token_calls": {"authorization_code": 2, "refresh_token": 3, "total": 6},
        "me_calls": 2,
        "refresh_by_user": {"counted": 2, "other": 1},
        "me_by_user": {"counted": 1},
    }


async def test_the_clock_control_fast_forwards_expiry(http: httpx.AsyncClient) -> None:
    pkce = new_pkce()
    code = await get_code(http, "seller", pkce)
    before = (await http.get("/__fake__/clock")).json()["now"]

    after = (await http.post("/__fake__/clock", json={"advance_seconds": 11})).json()["now"]

    assert after == pytest.approx(before + 11)
    assert (await exchange(http, code, pkce)).json()["error"] == "invalid_grant"


async def test_reset_forgets_everything_but_the_configured_clients(http: httpx.AsyncClient) -> None:
    tokens = await tokens_for(http, "seller")
    await http.post(
        "/__fake__/clients",
        json={"client_id": "extra", "client_secret": "s", "redirect_uris": [REDIRECT_URI]},
    )
    await http.post("/__fake__/clock", json={"advance_seconds": 100})
    await add_fault(http, endpoint="me", kind="status")

    assert (await http.post("/__fake__/reset")).status_code == 204

    assert (await http.get("/__fake__/users/seller")).status_code == 404
    assert (await me(http, tokens["access_token"])).json()["error_description"] == "Invalid access token"
    assert (await http.get("/__fake__/stats")).json()["token_calls"]["total"] == 0
    shortcut = {"client_id": "extra", "redirect_uri": REDIRECT_URI, "login": "x"}
    assert (await http.post("/__fake__/authorize", json=shortcut)).status_code == 400
    assert (await tokens_for(http, "seller"))["access_token"]


async def test_a_registered_client_can_link_accounts(http: httpx.AsyncClient) -> None:
    registered = await http.post(
        "/__fake__/clients",
        json={
            "client_id": "second-app",
            "client_secret": "second-secret",
            "redirect_uris": ["https://b.example/cb"],
        },
    )
    authorized = await http.post(
        "/__fake__/authorize",
        json={"client_id": "second-app", "redirect_uri": "https://b.example/cb", "login": "s"},
    )
    form = {
        "grant_type": "authorization_code",
        "code": authorized.json()["code"],
        "redirect_uri": "https://b.example/cb",
    }

    response = await http.post(TOKEN_PATH, data=form, headers=basic("second-app", "second-secret"))

    assert registered.status_code == 201
    assert response.status_code == 200


class TestAuthorizeShortcut:
    async def test_it_redirects_with_code_state_and_extras(self, http: httpx.AsyncClient) -> None:
        body = {
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "login": "s",
            "state": "a&b",
            "extra": {"x": "1"},
        }

        response = (await http.post("/__fake__/authorize", json=body)).json()

        params = httpx.URL(response["redirect"]).params
        assert response["redirect"].startswith(REDIRECT_URI + "?code=")
        assert params["code"] == response["code"]
        assert params["state"] == "a&b"
        assert params["x"] == "1"

    async def test_it_validates_like_the_html_flow(self, http: httpx.AsyncClient) -> None:
        base = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "login": "s", "state": "st"}

        mismatch = await http.post("/__fake__/authorize", json=base | {"redirect_uri": REDIRECT_URI + "/"})
        plain = await http.post("/__fake__/authorize", json=base | {"code_challenge": "x" * 43})

        assert mismatch.status_code == 400
        assert mismatch.json() == {"error": "authorize_error_page", "detail": "Redirect URI mismatch"}
        assert plain.json()["code"] is None
        assert httpx.URL(plain.json()["redirect"]).params["error"] == "invalid_request"

    async def test_deny_is_the_cancel_button(self, http: httpx.AsyncClient) -> None:
        body = {
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "login": "s",
            "state": "st",
            "deny": True,
        }

        response = (await http.post("/__fake__/authorize", json=body)).json()

        params = httpx.URL(response["redirect"]).params
        assert params["error"] == "access_denied"
        assert params["state"] == "st"
