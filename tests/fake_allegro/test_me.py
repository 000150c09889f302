"""GET /me: the body, the Accept rule, and the 401/403 answers of the API host."""

from __future__ import annotations

import httpx
import pytest

from tests.fake_allegro.conftest import MakeApp
from tests.fake_allegro.helpers import ALLEGRO_JSON, FakeClock, exchange, get_code, me, tokens_for

FULL_AUTHENTICATION = {
    "error": "unauthorized",
    "error_description": "Full authentication is required to access this resource",
}


async def test_me_describes_the_tokens_user(http: httpx.AsyncClient) -> None:
    await http.post(
        "/__fake__/users",
        json={
            "login": "Sklep_Ania",
            "id": "43617823",
            "firstName": "Anna",
            "company": {"name": "Ania sp. z o.o."},
        },
    )
    tokens = await tokens_for(http, "sklep_ania")

    response = await me(http, tokens["access_token"])

    assert response.status_code == 200
    assert response.headers["content-type"] == ALLEGRO_JSON
    assert response.headers["trace-id"]
    assert response.json() == {
        "id": "43617823",
        "login": "Sklep_Ania",
        "firstName": "Anna",
        "lastName": "Kowalski",
        "email": "sklep_ania@example.com",
        "baseMarketplace": {"id": "allegro-pl"},
        "company": {"name": "Ania sp. z o.o.", "taxId": None},
        "features": [],
    }


class TestAcceptHeader:
    @pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
    async def test_without_the_allegro_media_type_it_is_406(
        self, http: httpx.AsyncClient, accept: str | None
    ) -> None:
        tokens = await tokens_for(http)

        response = await me(http, tokens["access_token"], accept=accept)

        assert response.status_code == 406
        error = response.json()["errors"][0]
        assert error["code"] == "NotAcceptableException"
        assert set(error) == {"code", "message", "details", "path", "userMessage"}

    async def test_the_media_type_may_be_one_of_several(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http)

        response = await me(http, tokens["access_token"], accept=f"application/json, {ALLEGRO_JSON}; q=0.9")

        assert response.status_code == 200


class TestUnauthorized:
    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer "}])
    async def test_no_bearer_token_needs_full_authentication(
        self, http: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        response = await http.get("/me", headers=headers | {"Accept": ALLEGRO_JSON})

        assert response.status_code == 401
        assert response.json() == FULL_AUTHENTICATION

    async def test_garbage_cannot_be_converted(self, http: httpx.AsyncClient) -> None:
        response = await me(http, "garbage")

        assert response.json() == {
            "error": "invalid_token",
            "error_description": "Cannot convert access token to JSON",
        }

    async def test_a_token_of_another_allegro_cannot_be_converted(
        self, http: httpx.AsyncClient, make_app: MakeApp
    ) -> None:
        # Another instance signs with another key, like production tokens sent to the sandbox.
        other = make_app(signing_key=None)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other), base_url="https://allegro.pl"
        ) as elsewhere:
            foreign = await tokens_for(elsewhere)

        response = await me(http, foreign["access_token"])

        assert response.status_code == 401
        assert response.json()["error_description"] == "Cannot convert access token to JSON"

    async def test_a_refresh_token_is_not_an_access_token(self, http: httpx.AsyncClient) -> None:
        tokens = await tokens_for(http)

        response = await me(http, tokens["refresh_token"])

        assert response.json() == {"error": "invalid_token", "error_description": "Invalid access token"}

    async def test_an_access_token_expires_after_twelve_hours(
        self, http: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        token = (await tokens_for(http))["access_token"]

        clock.advance(43199)
        assert (await me(http, token)).status_code == 200
        clock.advance(1)
        response = await me(http, token)

        assert response.status_code == 401
        assert response.json()["error_description"] == f"Access token expired: {token}"


async def test_a_token_without_the_profile_scope_is_403(http: httpx.AsyncClient) -> None:
    code = await get_code(http, "seller", scope="allegro:api:orders:read")
    tokens = (await exchange(http, code)).json()

    response = await me(http, tokens["access_token"])

    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "AccessDenied"
