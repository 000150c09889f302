"""The exact requests we send to Allegro, and how its answers are classified (respx, strict)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import respx

from allegro_link.allegro.client import AllegroClient, AllegroRejected, AllegroUnavailable

AUTH = "https://allegro.test"
API = "https://api.allegro.test"
REDIRECT = "https://broker.example/oauth/callback"


def _jwt(**claims: object) -> str:
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def _token_body(user: str = "1234") -> dict[str, object]:
    return {
        "access_token": _jwt(user_name=user, exp=int(time.time()) + 43200),
        "token_type": "bearer",
        "refresh_token": _jwt(user_name=user, exp=int(time.time()) + 90 * 86400),
        "expires_in": 43199,
        "scope": "allegro:api:orders:read allegro:api:profile:read",
        "allegro_api": True,
        "jti": "j1",
    }


@pytest.fixture
async def client() -> AsyncIterator[AllegroClient]:
    async with httpx.AsyncClient() as http:
        yield AllegroClient(
            http,
            auth_base_url=AUTH,
            api_base_url=API,
            client_id="cid",
            client_secret="csecret",
            redirect_uri=REDIRECT,
        )


@pytest.fixture
def allegro() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        yield router


def _form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode(), strict_parsing=True)


class TestAuthorizationUrl:
    def test_has_every_parameter_allegro_needs(self, client: AllegroClient) -> None:
        url = urlsplit(client.authorization_url(state="s" * 43, code_challenge="c" * 43))
        assert f"{url.scheme}://{url.netloc}{url.path}" == f"{AUTH}/auth/oauth/authorize"
        assert parse_qs(url.query) == {
            "response_type": ["code"],
            "client_id": ["cid"],
            "redirect_uri": [REDIRECT],
            "state": ["s" * 43],
            "code_challenge": ["c" * 43],
            "code_challenge_method": ["S256"],
            "prompt": ["confirm"],
        }


class TestExchange:
    async def test_sends_form_body_with_basic_auth_and_verifier(
        self, client: AllegroClient, allegro: respx.MockRouter
    ) -> None:
        route = allegro.post(f"{AUTH}/auth/oauth/token").respond(200, json=_token_body())
        tokens = await client.exchange_code("the-code", "v" * 64)
        request = route.calls.last.request
        assert request.url.query == b""  # nothing in the query string: Allegro reads the body only
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert request.headers["authorization"] == "Basic " + base64.b64encode(b"cid:csecret").decode()
        assert _form(request) == {
            "grant_type": ["authorization_code"],
            "code": ["the-code"],
            "redirect_uri": [REDIRECT],
            "code_verifier": ["v" * 64],
        }
        assert tokens.allegro_user_id == "1234"
        assert tokens.refresh_expires_at is not None
        assert "eyJ" not in repr(tokens)

    async def test_invalid_grant_is_rejected_not_unavailable(
        self, client: AllegroClient, allegro: respx.MockRouter
    ) -> None:
        allegro.post(f"{AUTH}/auth/oauth/token").respond(
            400, json={"error": "invalid_grant", "error_description": "Invalid authorization code: abc"}
        )
        with pytest.raises(AllegroRejected) as caught:
            await client.exchange_code("abc", "v" * 64)
        assert caught.value.is_invalid_grant
        assert "abc" not in str(caught.value)

    async def test_server_errors_are_unavailable_and_never_retried(
        self, client: AllegroClient, allegro: respx.MockRouter
    ) -> None:
        route = allegro.post(f"{AUTH}/auth/oauth/token").respond(503, text="<html>down</html>")
        with pytest.raises(AllegroUnavailable):
            await client.exchange_code("c", "v" * 64)
        assert route.call_count == 1


class TestRefresh:
    async def test_sends_refresh_grant_in_body(
        self, client: AllegroClient, allegro: respx.MockRouter
    ) -> None:
        route = allegro.post(f"{AUTH}/auth/oauth/token").respond(200, json=_token_body())
        await client.refresh("old-refresh")
        request = route.calls.last.request
        assert _form(request) == {"grant_type": ["refresh_token"], "refresh_token": ["old-refresh"]}
        assert request.headers["authorization"].startswith("Basic ")

    @pytest.mark.parametrize(
        ("status", "body", "kind"),
        [
            (
                400,
                {"error": "invalid_grant", "error_description": "Invalid refresh token: x"},
                AllegroRejected,
            ),
            (401, {"error": "Unauthorized", "error_description": "Unauthorized"}, AllegroRejected),
            (429, {"error": "token_creation_rate_limit_exceeded"}, AllegroUnavailable),
            (500, {"error": "oops"}, AllegroUnavailable),
            (200, {"access_token": "only-half"}, AllegroUnavailable),
        ],
    )
    async def test_classification(
        self,
        client: AllegroClient,
        allegro: respx.MockRouter,
        status: int,
        body: object,
        kind: type[Exception],
    ) -> None:
        allegro.post(f"{AUTH}/auth/oauth/token").respond(status, json=body)
        with pytest.raises(kind):
            await client.refresh("r")

    async def test_non_json_answer_is_unavailable(
        self, client: AllegroClient, allegro: respx.MockRouter
    ) -> None:
        allegro.post(f"{AUTH}/auth/oauth/token").respond(200, text="not json")
        with pytest.raises(AllegroUnavailable):
            await client.refresh("r")

    async def test_timeout_is_unavailable(self, client: AllegroClient, allegro: respx.MockRouter) -> None:
        allegro.post(f"{AUTH}/auth/oauth/token").mock(side_effect=httpx.ReadTimeout("slow"))
        with pytest.raises(AllegroUnavailable):
            await client.refresh("r")

    async def test_retry_after_is_kept(self, client: AllegroClient, allegro: respx.MockRouter) -> None:
        allegro.post(f"{AUTH}/auth/oauth/token").respond(429, headers={"Retry-After": "7"}, json={})
        with pytest.raises(AllegroUnavailable) as caught:
            await client.refresh("r")
        assert caught.value.retry_after == 7.0


class TestMe:
    async def test_sends_versioned_accept_header(
        self, client: AllegroClient, allegro: respx.MockRouter
    ) -> None:
        route = allegro.get(f"{API}/me").respond(200, json={"id": "1234", "login": "Sprzedawca"})
        user = await client.me("access")
        request = route.calls.last.request
        assert request.headers["accept"] == "application/vnd.allegro.public.v1+json"
        assert request.headers["authorization"] == "Bearer access"
        assert (user.id, user.login) == ("1234", "Sprzedawca")

    async def test_401_is_rejected(self, client: AllegroClient, allegro: respx.MockRouter) -> None:
        allegro.get(f"{API}/me").respond(401, json={"error": "invalid_token"})
        with pytest.raises(AllegroRejected):
            await client.me("access")
