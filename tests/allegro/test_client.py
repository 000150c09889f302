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


class _Pauses:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def pauses() -> _Pauses:
    return _Pauses()


@pytest.fixture
async def retrying(pauses: _Pauses) -> AsyncIterator[AllegroClient]:
    async with httpx.AsyncClient() as http:
        yield AllegroClient(
            http,
            auth_base_url=AUTH,
            api_base_url=API,
            client_id="cid",
            client_secret="csecret",
            redirect_uri=REDIRECT,
            retry_backoff=(0.2, 0.6),
            sleep=pauses,
        )


NOT_SENT = [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow connect"), httpx.PoolTimeout("busy")]
MAYBE_SENT = [
    httpx.ReadTimeout("slow answer"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.ReadError("connection reset by peer"),
    httpx.WriteError("broken pipe"),
]


class TestRetries:
    """Retried only when safe: a token request only if it never left us, /me (a read) also after it did."""

    @pytest.mark.parametrize("failure", NOT_SENT, ids=lambda e: type(e).__name__)
    @pytest.mark.parametrize("grant", ["refresh", "exchange"])
    async def test_token_requests_that_never_left_are_retried_with_jittered_backoff(
        self,
        retrying: AllegroClient,
        allegro: respx.MockRouter,
        pauses: _Pauses,
        failure: Exception,
        grant: str,
    ) -> None:
        route = allegro.post(f"{AUTH}/auth/oauth/token").mock(
            side_effect=[failure, failure, httpx.Response(200, json=_token_body())]
        )
        call = retrying.refresh("r") if grant == "refresh" else retrying.exchange_code("c", "v" * 64)
        tokens = await call
        assert tokens.allegro_user_id == "1234"
        assert route.call_count == 3
        assert len(pauses.seconds) == 2
        assert 0 <= pauses.seconds[0] <= 0.2 and 0 <= pauses.seconds[1] <= 0.6
        bodies = {call.request.content for call in route.calls}
        assert len(bodies) == 1  # the very same request each time

    @pytest.mark.parametrize("failure", MAYBE_SENT, ids=lambda e: type(e).__name__)
    @pytest.mark.parametrize("grant", ["refresh", "exchange"])
    async def test_token_requests_that_may_have_reached_allegro_are_never_resent(
        self,
        retrying: AllegroClient,
        allegro: respx.MockRouter,
        pauses: _Pauses,
        failure: Exception,
        grant: str,
    ) -> None:
        route = allegro.post(f"{AUTH}/auth/oauth/token").mock(side_effect=[failure])
        call = retrying.refresh("r") if grant == "refresh" else retrying.exchange_code("c", "v" * 64)
        with pytest.raises(AllegroUnavailable):
            await call
        assert route.call_count == 1
        assert pauses.seconds == []

    @pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
    async def test_token_requests_answered_with_an_error_are_not_resent(
        self, retrying: AllegroClient, allegro: respx.MockRouter, status: int
    ) -> None:
        route = allegro.post(f"{AUTH}/auth/oauth/token").respond(status, text="<html>busy</html>")
        with pytest.raises(AllegroUnavailable):
            await retrying.refresh("r")
        assert route.call_count == 1

    async def test_retries_are_bounded(
        self, retrying: AllegroClient, allegro: respx.MockRouter, pauses: _Pauses
    ) -> None:
        route = allegro.post(f"{AUTH}/auth/oauth/token").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(AllegroUnavailable):
            await retrying.refresh("r")
        assert route.call_count == 3
        assert len(pauses.seconds) == 2

    async def test_no_retry_once_the_budget_is_spent(
        self, retrying: AllegroClient, allegro: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("allegro_link.allegro.client.RETRY_BUDGET_SECONDS", 0.0)
        route = allegro.post(f"{AUTH}/auth/oauth/token").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(AllegroUnavailable):
            await retrying.refresh("r")
        assert route.call_count == 1

    async def test_the_pauses_are_jittered(self, pauses: _Pauses) -> None:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(lambda request: httpx.Response(503))
        ) as http:
            client = AllegroClient(
                http,
                auth_base_url=AUTH,
                api_base_url=API,
                client_id="cid",
                client_secret="csecret",
                redirect_uri=REDIRECT,
                sleep=pauses,
            )
            for _ in range(10):
                with pytest.raises(AllegroUnavailable):
                    await client.me("access")
        assert len(pauses.seconds) == 20
        assert len(set(pauses.seconds)) == 20  # full jitter: no two callers wait in lockstep

    @pytest.mark.parametrize(
        "first",
        [*NOT_SENT, *MAYBE_SENT, httpx.Response(503), httpx.Response(502, text="<html>")],
        ids=lambda e: type(e).__name__ if isinstance(e, Exception) else str(e.status_code),
    )
    async def test_me_is_a_read_and_is_retried_after_any_transient_failure(
        self, retrying: AllegroClient, allegro: respx.MockRouter, first: Exception | httpx.Response
    ) -> None:
        route = allegro.get(f"{API}/me").mock(
            side_effect=[first, httpx.Response(200, json={"id": "1234", "login": "Sprzedawca"})]
        )
        user = await retrying.me("access")
        assert user.login == "Sprzedawca"
        assert route.call_count == 2

    @pytest.mark.parametrize("status", [401, 403, 429])
    async def test_me_refusals_and_rate_limits_are_not_retried(
        self, retrying: AllegroClient, allegro: respx.MockRouter, status: int
    ) -> None:
        route = allegro.get(f"{API}/me").respond(status, json={"error": "x"})
        with pytest.raises((AllegroRejected, AllegroUnavailable)):
            await retrying.me("access")
        assert route.call_count == 1
