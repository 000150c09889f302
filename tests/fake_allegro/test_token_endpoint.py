"""POST /auth/oauth/token, authorization_code grant: client auth, codes, PKCE, body-only parameters."""

from __future__ import annotations

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from tests.fake_allegro.helpers import (
    ALLEGRO_JSON,
    CLIENT_ID,
    OAUTH_JSON,
    REDIRECT_URI,
    TOKEN_PATH,
    FakeClock,
    basic,
    exchange,
    get_code,
    me,
    new_pkce,
    refresh,
)

UNAUTHORIZED = {"error": "Unauthorized", "error_description": "Unauthorized"}


class TestSuccessfulExchange:
    async def test_the_answer_has_allegros_shape(self, http: httpx.AsyncClient) -> None:
        pkce = new_pkce()

        response = await exchange(http, await get_code(http, "seller", pkce), pkce)

        assert response.status_code == 200
        assert response.headers["content-type"] == OAUTH_JSON
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert set(body) == {
            "access_token",
            "token_type",
            "refresh_token",
            "expires_in",
            "scope",
            "allegro_api",
            "jti",
        }
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 43199
        assert body["allegro_api"] is True
        assert "allegro:api:profile:read" in body["scope"].split(" ")

    async def test_tokens_are_rs256_jwts_with_allegros_claims(
        self, http: httpx.AsyncClient, signing_key: RSAPrivateKey, clock: FakeClock
    ) -> None:
        pkce = new_pkce()
        body = (await exchange(http, await get_code(http, "seller", pkce), pkce)).json()
        user_id = (await http.get("/__fake__/users/seller")).json()["id"]

        # The fake's clock is not the wall clock, so pyjwt must not judge `exp`.
        key = signing_key.public_key()
        access = jwt.decode(body["access_token"], key, ["RS256"], options={"verify_exp": False})
        refresh_claims = jwt.decode(body["refresh_token"], key, ["RS256"], options={"verify_exp": False})

        assert jwt.get_unverified_header(body["access_token"])["alg"] == "RS256"
        assert set(access) == {"user_name", "scope", "allegro_api", "iss", "exp", "jti", "client_id"}
        assert access["user_name"] == user_id
        assert access["client_id"] == CLIENT_ID
        assert access["iss"] == "https://allegro.pl"
        assert access["jti"] == body["jti"]
        assert access["exp"] == int(clock.now + 43200)
        assert access["scope"] == body["scope"].split(" ")
        assert set(refresh_claims) == {
            "user_name",
            "scope",
            "allegro_api",
            "ati",
            "iss",
            "exp",
            "jti",
            "client_id",
        }
        assert refresh_claims["ati"] == access["jti"]
        assert refresh_claims["exp"] == int(clock.now + 90 * 86400)

    async def test_a_narrower_scope_gives_a_narrower_token(self, http: httpx.AsyncClient) -> None:
        pkce = new_pkce()
        code = await get_code(http, "seller", pkce, scope="allegro:api:orders:read allegro:api:profile:read")

        body = (await exchange(http, code, pkce)).json()

        assert body["scope"] == "allegro:api:orders:read allegro:api:profile:read"

    async def test_scopes_the_app_did_not_declare_are_left_out(self, http: httpx.AsyncClient) -> None:
        await http.post(
            "/__fake__/clients",
            json={
                "client_id": "narrow",
                "client_secret": "narrow-secret",
                "redirect_uris": [REDIRECT_URI],
                "scopes": ["allegro:api:profile:read"],
            },
        )
        authorized = await http.post(
            "/__fake__/authorize",
            json={
                "client_id": "narrow",
                "redirect_uri": REDIRECT_URI,
                "login": "seller",
                "scope": "allegro:api:profile:read allegro:api:orders:write",
            },
        )
        form = {
            "grant_type": "authorization_code",
            "code": authorized.json()["code"],
            "redirect_uri": REDIRECT_URI,
        }

        body = (await http.post(TOKEN_PATH, data=form, headers=basic("narrow", "narrow-secret"))).json()

        assert body["scope"] == "allegro:api:profile:read"

    async def test_a_code_without_pkce_works_with_the_client_secret(self, http: httpx.AsyncClient) -> None:
        response = await exchange(http, await get_code(http, "seller"))

        assert response.status_code == 200


class TestCodes:
    async def test_a_code_is_single_use_and_its_replay_kills_what_it_minted(
        self, http: httpx.AsyncClient
    ) -> None:
        pkce = new_pkce()
        code = await get_code(http, "seller", pkce)
        first = (await exchange(http, code, pkce)).json()

        replay = await exchange(http, code, pkce)

        assert replay.status_code == 400
        assert replay.headers["content-type"] == ALLEGRO_JSON
        assert replay.json() == {
            "error": "invalid_grant",
            "error_description": f"Invalid authorization code: {code}",
        }
        assert (await me(http, first["access_token"])).status_code == 401
        assert (await refresh(http, first["refresh_token"])).json()["error"] == "invalid_grant"

    async def test_a_code_lives_ten_seconds(self, http: httpx.AsyncClient, clock: FakeClock) -> None:
        pkce = new_pkce()
        fresh, stale = await get_code(http, "seller", pkce), await get_code(http, "seller", pkce)

        clock.advance(9.9)
        assert (await exchange(http, fresh, pkce)).status_code == 200
        clock.advance(0.1)
        response = await exchange(http, stale, pkce)

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    async def test_a_failed_exchange_burns_the_code(self, http: httpx.AsyncClient) -> None:
        pkce = new_pkce()
        code = await get_code(http, "seller", pkce)

        assert (await exchange(http, code, new_pkce())).status_code == 400
        response = await exchange(http, code, pkce)

        assert response.json()["error_description"] == f"Invalid authorization code: {code}"

    async def test_a_code_belongs_to_its_client(self, http: httpx.AsyncClient) -> None:
        await http.post(
            "/__fake__/clients",
            json={"client_id": "other", "client_secret": "other-secret", "redirect_uris": [REDIRECT_URI]},
        )
        code = await get_code(http, "seller")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}

        response = await http.post(TOKEN_PATH, data=form, headers=basic("other", "other-secret"))

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    @pytest.mark.parametrize("redirect_uri", [REDIRECT_URI + "/", "http://localhost:8000/other", ""])
    async def test_the_redirect_uri_must_be_the_one_of_the_authorize_step(
        self, http: httpx.AsyncClient, redirect_uri: str
    ) -> None:
        pkce = new_pkce()
        code = await get_code(http, "seller", pkce)

        response = await exchange(http, code, pkce, redirect_uri=redirect_uri)

        assert response.status_code == 400
        assert response.json() == {"error": "invalid_grant", "error_description": "Redirect URI mismatch."}

    async def test_a_missing_code_is_an_invalid_request(self, http: httpx.AsyncClient) -> None:
        form = {"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI}

        response = await http.post(TOKEN_PATH, data=form, headers=basic())

        assert response.status_code == 400
        assert response.headers["content-type"] == OAUTH_JSON
        assert response.json() == {
            "error": "invalid_request",
            "error_description": "An authorization code must be supplied.",
        }


class TestPkce:
    @pytest.mark.parametrize("verifier", ["wrong-" + "v" * 50, None, "short"])
    async def test_the_verifier_must_match_the_challenge(
        self, http: httpx.AsyncClient, verifier: str | None
    ) -> None:
        pkce = new_pkce()
        form = {"grant_type": "authorization_code", "code": await get_code(http, "seller", pkce)}
        form["redirect_uri"] = REDIRECT_URI
        if verifier is not None:
            form["code_verifier"] = verifier

        response = await http.post(TOKEN_PATH, data=form, headers=basic())

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    async def test_a_public_client_may_exchange_with_client_id_and_verifier(
        self, http: httpx.AsyncClient
    ) -> None:
        pkce = new_pkce()
        form = {
            "grant_type": "authorization_code",
            "code": await get_code(http, "seller", pkce),
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "code_verifier": pkce.verifier,
        }

        response = await http.post(TOKEN_PATH, data=form)

        assert response.status_code == 200

    async def test_the_public_variant_needs_a_pkce_code(self, http: httpx.AsyncClient) -> None:
        form = {
            "grant_type": "authorization_code",
            "code": await get_code(http, "seller"),
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "code_verifier": new_pkce().verifier,
        }

        response = await http.post(TOKEN_PATH, data=form)

        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED

    async def test_the_public_variant_does_not_refresh(self, http: httpx.AsyncClient) -> None:
        pkce = new_pkce()
        tokens = (await exchange(http, await get_code(http, "seller", pkce), pkce)).json()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": CLIENT_ID,
            "code_verifier": pkce.verifier,
        }

        response = await http.post(TOKEN_PATH, data=form)

        assert response.status_code == 401


class TestClientAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            basic(secret="wrong"),
            basic(client_id="nobody"),
            {"Authorization": "Basic not-base64!"},
            {"Authorization": "Bearer something"},
        ],
    )
    async def test_bad_or_missing_credentials_get_401_unauthorized(
        self, http: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        form = {
            "grant_type": "authorization_code",
            "code": await get_code(http),
            "redirect_uri": REDIRECT_URI,
        }

        response = await http.post(TOKEN_PATH, data=form, headers=headers)

        assert response.status_code == 401
        assert response.headers["content-type"] == OAUTH_JSON
        assert response.json() == UNAUTHORIZED

    async def test_a_body_client_id_must_agree_with_basic_auth(self, http: httpx.AsyncClient) -> None:
        form = {"grant_type": "authorization_code", "code": await get_code(http), "client_id": "someone-else"}

        response = await http.post(TOKEN_PATH, data=form | {"redirect_uri": REDIRECT_URI}, headers=basic())

        assert response.status_code == 401


class TestParametersOnlyFromTheBody:
    async def test_query_string_parameters_are_ignored(self, http: httpx.AsyncClient) -> None:
        params = {
            "grant_type": "authorization_code",
            "code": await get_code(http),
            "redirect_uri": REDIRECT_URI,
        }

        response = await http.post(TOKEN_PATH, params=params, headers=basic())

        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid_request",
            "error_description": "OAuth 2.0 Parameter: grant_type",
        }

    async def test_a_json_body_is_not_read(self, http: httpx.AsyncClient) -> None:
        body = {
            "grant_type": "authorization_code",
            "code": await get_code(http),
            "redirect_uri": REDIRECT_URI,
        }

        response = await http.post(TOKEN_PATH, json=body, headers=basic())

        assert response.json()["error_description"] == "OAuth 2.0 Parameter: grant_type"

    async def test_get_is_not_allowed(self, http: httpx.AsyncClient) -> None:
        response = await http.get(TOKEN_PATH, params={"grant_type": "refresh_token"}, headers=basic())

        assert response.status_code == 405

    async def test_an_unknown_grant_type_is_refused(self, http: httpx.AsyncClient) -> None:
        response = await http.post(TOKEN_PATH, data={"grant_type": "password"}, headers=basic())

        assert response.status_code == 400
        assert response.json()["error"] == "unsupported_grant_type"
