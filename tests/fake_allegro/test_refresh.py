"""grant_type=refresh_token: rotation, the 60-second grace, expiry, revocation and the 20-session cap."""

from __future__ import annotations

import httpx

from tests.fake_allegro.conftest import MakeApp
from tests.fake_allegro.helpers import ALLEGRO_JSON, FakeClock, me, refresh, tokens_for


def invalid_refresh(token: str) -> dict[str, str]:
    return {"error": "invalid_grant", "error_description": f"Invalid refresh token: {token}"}


class TestRotation:
    async def test_a_refresh_returns_a_new_pair_that_works(self, http: httpx.AsyncClient) -> None:
        first = await tokens_for(http)

        response = await refresh(http, first["refresh_token"])

        assert response.status_code == 200
        second = response.json()
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]
        assert second["expires_in"] == 43199
        assert (await me(http, second["access_token"])).status_code == 200
        assert (await refresh(http, second["refresh_token"])).status_code == 200

    async def test_a_refresh_kills_the_previous_access_token(self, http: httpx.AsyncClient) -> None:
        first = await tokens_for(http)

        await refresh(http, first["refresh_token"])
        response = await me(http, first["access_token"])

        assert response.status_code == 401
        assert response.json() == {"error": "invalid_token", "error_description": "Invalid access token"}

    async def test_a_used_refresh_token_works_for_60_seconds_after_its_first_use(
        self, http: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        token = (await tokens_for(http))["refresh_token"]
        assert (await refresh(http, token)).status_code == 200

        clock.advance(59)
        within_grace = await refresh(http, token)
        clock.advance(2)
        after_grace = await refresh(http, token)

        assert within_grace.status_code == 200
        assert after_grace.status_code == 400
        assert after_grace.headers["content-type"] == ALLEGRO_JSON
        assert after_grace.json() == invalid_refresh(token)

    async def test_the_grace_is_counted_from_the_first_use_not_the_last(
        self, http: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        token = (await tokens_for(http))["refresh_token"]
        await refresh(http, token)
        clock.advance(50)
        await refresh(http, token)

        clock.advance(11)

        assert (await refresh(http, token)).json() == invalid_refresh(token)

    async def test_a_refresh_in_the_grace_window_kills_the_access_token_of_the_first_refresh(
        self, http: httpx.AsyncClient
    ) -> None:
        token = (await tokens_for(http))["refresh_token"]
        first_refresh = (await refresh(http, token)).json()

        retried = (await refresh(http, token)).json()

        assert (await me(http, first_refresh["access_token"])).status_code == 401
        assert (await me(http, retried["access_token"])).status_code == 200
        # The pair the client may never have received keeps its refresh token.
        assert (await refresh(http, first_refresh["refresh_token"])).status_code == 200

    async def test_a_refresh_token_expires_after_its_lifetime(
        self, http: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        token = (await tokens_for(http))["refresh_token"]

        clock.advance(90 * 86400)
        response = await refresh(http, token)

        assert response.status_code == 400
        assert response.json() == invalid_refresh(token)

    async def test_rolling_lifetime_each_refresh_gives_three_more_months(
        self, http: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        token = (await tokens_for(http))["refresh_token"]
        for _ in range(3):
            clock.advance(80 * 86400)
            response = await refresh(http, token)
            assert response.status_code == 200
            token = response.json()["refresh_token"]

    async def test_garbage_is_an_invalid_refresh_token(self, http: httpx.AsyncClient) -> None:
        response = await refresh(http, "not-a-token")

        assert response.json() == invalid_refresh("not-a-token")

    async def test_short_lifetimes_are_configurable(self, make_app: MakeApp, clock: FakeClock) -> None:
        app = make_app(access_token_ttl=60, refresh_token_ttl=120)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://allegro.pl"
        ) as http:
            tokens = await tokens_for(http)
            assert tokens["expires_in"] == 59
            clock.advance(120)
            assert (await refresh(http, tokens["refresh_token"])).status_code == 400


class TestRevocation:
    async def test_a_revoked_grant_gets_401_on_refresh_and_on_me(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http, "seller")

        revoked = await http.post("/__fake__/users/seller/revoke")
        refreshed = await refresh(http, tokens["refresh_token"])
        api = await me(http, tokens["access_token"])

        assert revoked.json() == {"revoked_sessions": 1}
        assert refreshed.status_code == 401
        assert refreshed.json() == {"error": "Unauthorized", "error_description": "Unauthorized"}
        assert api.status_code == 401
        assert api.json()["error"] == "invalid_token"

    async def test_revocation_is_per_user_and_a_new_link_works(self, http: httpx.AsyncClient) -> None:
        revoked = await tokens_for(http, "seller")
        bystander = await tokens_for(http, "other-seller")
        await http.post("/__fake__/users/seller/revoke")

        relinked = await tokens_for(http, "seller")

        assert (await refresh(http, bystander["refresh_token"])).status_code == 200
        assert (await refresh(http, relinked["refresh_token"])).status_code == 200
        assert (await refresh(http, revoked["refresh_token"])).status_code == 401

    async def test_revoking_an_unknown_user_is_404(self, http: httpx.AsyncClient) -> None:
        assert (await http.post("/__fake__/users/nobody/revoke")).status_code == 404


class TestExpireControl:
    async def test_expiring_access_tokens_leaves_refresh_working(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http, "seller")

        expired = await http.post("/__fake__/users/seller/expire", json={"what": "access"})
        api = await me(http, tokens["access_token"])

        assert expired.json() == {"expired": {"access": 1, "refresh": 0}}
        assert api.status_code == 401
        assert api.json() == {
            "error": "invalid_token",
            "error_description": f"Access token expired: {tokens['access_token']}",
        }
        assert (await refresh(http, tokens["refresh_token"])).status_code == 200

    async def test_expiring_refresh_tokens_forces_a_new_authorization(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http, "seller")

        await http.post("/__fake__/users/seller/expire", json={"what": "refresh"})

        assert (await me(http, tokens["access_token"])).status_code == 200
        assert (await refresh(http, tokens["refresh_token"])).json() == invalid_refresh(
            tokens["refresh_token"]
        )

    async def test_expiring_both(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http, "seller")

        await http.post("/__fake__/users/seller/expire", json={"what": "both"})

        assert (await me(http, tokens["access_token"])).status_code == 401
        assert (await refresh(http, tokens["refresh_token"])).status_code == 400


class TestSessionCap:
    async def test_the_21st_token_kills_the_1st_session(self, http: httpx.AsyncClient) -> None:
        sessions = [await tokens_for(http, "busy-seller") for _ in range(21)]

        oldest, second, newest = sessions[0], sessions[1], sessions[20]

        assert (await me(http, oldest["access_token"])).status_code == 401
        assert (await refresh(http, oldest["refresh_token"])).json() == invalid_refresh(
            oldest["refresh_token"]
        )
        assert (await me(http, second["access_token"])).status_code == 200
        assert (await me(http, newest["access_token"])).status_code == 200

    async def test_the_cap_counts_per_user(self, http: httpx.AsyncClient) -> None:
        first_of_other_user = await tokens_for(http, "quiet-seller")
        for _ in range(21):
            await tokens_for(http, "busy-seller")

        assert (await me(http, first_of_other_user["access_token"])).status_code == 200

    async def test_expired_access_tokens_do_not_count(
        self, http: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        sessions = [await tokens_for(http, "busy-seller") for _ in range(20)]
        clock.advance(43200)

        await tokens_for(http, "busy-seller")

        assert (await refresh(http, sessions[0]["refresh_token"])).status_code == 200
