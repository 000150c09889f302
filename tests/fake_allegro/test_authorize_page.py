"""The HTML side of /auth/oauth/authorize: login, consent, account switch, cancel and refusals."""

from __future__ import annotations

import httpx
import jwt
import pytest

from tests.fake_allegro.helpers import (
    AUTHORIZE_PATH,
    CLIENT_ID,
    REDIRECT_URI,
    authorize_params,
    exchange,
    hidden_query,
    new_pkce,
    redirect_params,
)


async def log_in(http: httpx.AsyncClient, page: httpx.Response, login: str) -> httpx.Response:
    """Submit the login form of `page`; returns the page the browser lands on."""
    form = {"oauth_query": hidden_query(page.text), "login": login, "password": "whatever", "action": "login"}
    response = await http.post(AUTHORIZE_PATH, data=form)
    assert response.status_code == 303
    return await http.get(response.headers["location"])


async def press(http: httpx.AsyncClient, page: httpx.Response, action: str) -> httpx.Response:
    return await http.post(AUTHORIZE_PATH, data={"oauth_query": hidden_query(page.text), "action": action})


async def user_id_of(http: httpx.AsyncClient, login: str) -> str:
    user_id = (await http.get(f"/__fake__/users/{login}")).json()["id"]
    assert isinstance(user_id, str)
    return user_id


class TestLoginAndConsent:
    async def test_a_new_browser_sees_the_login_form(self, http: httpx.AsyncClient) -> None:
        page = await http.get(AUTHORIZE_PATH, params=authorize_params())

        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<input id="login" name="login"' in page.text
        assert "Login lub e-mail" in page.text
        assert 'type="password"' in page.text
        assert ">Zaloguj się</button>" in page.text
        assert "Powiąż konto" not in page.text

    async def test_login_then_consent_redirects_with_a_code_that_belongs_to_that_user(
        self, http: httpx.AsyncClient
    ) -> None:
        pkce = new_pkce()
        page = await http.get(AUTHORIZE_PATH, params=authorize_params(pkce, state="xyz-123"))

        consent = await log_in(http, page, "seller-one")
        assert 'Zalogowano jako <strong id="current-login">seller-one</strong>' in consent.text
        for button in ("Powiąż konto", "Zmień konto", "Anuluj"):
            assert f">{button}</button>" in consent.text
        done = await press(http, consent, "consent")

        assert done.headers["location"].startswith(REDIRECT_URI + "?code=")
        params = redirect_params(done)
        assert params["state"] == "xyz-123"
        tokens = await exchange(http, params["code"], pkce)
        assert tokens.status_code == 200
        claims = jwt.decode(tokens.json()["access_token"], options={"verify_signature": False})
        assert claims["user_name"] == await user_id_of(http, "seller-one")

    async def test_a_logged_in_browser_still_has_to_consent(self, http: httpx.AsyncClient) -> None:
        first = await log_in(http, await http.get(AUTHORIZE_PATH, params=authorize_params()), "seller")
        await press(http, first, "consent")

        again = await http.get(AUTHORIZE_PATH, params=authorize_params())

        assert again.status_code == 200
        assert "Zalogowano jako" in again.text
        assert ">Powiąż konto</button>" in again.text

    async def test_prompt_confirm_asks_to_continue_as_the_logged_in_account(
        self, http: httpx.AsyncClient
    ) -> None:
        await log_in(http, await http.get(AUTHORIZE_PATH, params=authorize_params()), "seller")

        plain = await http.get(AUTHORIZE_PATH, params=authorize_params())
        confirm = await http.get(AUTHORIZE_PATH, params=authorize_params(prompt="confirm"))

        assert "Kontynuuj jako" not in plain.text
        assert "Kontynuuj jako seller" in confirm.text
        assert ">Zmień konto</button>" in confirm.text

    async def test_switch_account_logs_out_and_links_the_other_account(self, http: httpx.AsyncClient) -> None:
        pkce = new_pkce()
        params = authorize_params(pkce, prompt="confirm", state="keep-me")
        consent = await log_in(http, await http.get(AUTHORIZE_PATH, params=params), "first-seller")

        switched = await press(http, consent, "switch")
        login_again = await http.get(switched.headers["location"])
        assert switched.status_code == 303
        assert '<input id="login"' in login_again.text
        assert "Zalogowano jako" not in login_again.text
        consent = await log_in(http, login_again, "second-seller")
        assert "Kontynuuj jako second-seller" in consent.text
        done = redirect_params(await press(http, consent, "consent"))

        assert done["state"] == "keep-me"
        tokens = (await exchange(http, done["code"], pkce)).json()
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert claims["user_name"] == await user_id_of(http, "second-seller")

    async def test_cancel_redirects_with_access_denied_and_the_state(self, http: httpx.AsyncClient) -> None:
        consent = await log_in(
            http, await http.get(AUTHORIZE_PATH, params=authorize_params(state="s-42")), "seller"
        )

        cancelled = await press(http, consent, "cancel")

        assert cancelled.headers["location"].startswith(REDIRECT_URI + "?")
        params = redirect_params(cancelled)
        assert params["error"] == "access_denied"
        assert params["state"] == "s-42"
        assert "code" not in params

    async def test_login_by_email_of_a_known_user(self, http: httpx.AsyncClient) -> None:
        await http.post("/__fake__/users", json={"login": "mailer", "email": "Mailer@Example.com"})
        page = await http.get(AUTHORIZE_PATH, params=authorize_params())

        consent = await log_in(http, page, "mailer@example.com")

        assert 'Zalogowano jako <strong id="current-login">mailer</strong>' in consent.text

    async def test_an_empty_login_shows_the_form_again_without_logging_in(
        self, http: httpx.AsyncClient
    ) -> None:
        page = await http.get(AUTHORIZE_PATH, params=authorize_params())

        response = await http.post(
            AUTHORIZE_PATH, data={"oauth_query": hidden_query(page.text), "login": "  ", "action": "login"}
        )

        assert response.status_code == 200
        assert 'role="alert"' in response.text
        assert "set-cookie" not in response.headers

    async def test_consent_without_a_browser_session_goes_back_to_the_login_form(
        self, http: httpx.AsyncClient
    ) -> None:
        page = await http.get(AUTHORIZE_PATH, params=authorize_params())

        response = await press(http, page, "consent")

        assert response.status_code == 303
        assert response.headers["location"].startswith(AUTHORIZE_PATH + "?")


class TestRedirects:
    async def test_extra_parameters_and_state_come_back_exactly(self, http: httpx.AsyncClient) -> None:
        state = "a b/c?d&e=f+ł"
        consent = await log_in(
            http, await http.get(AUTHORIZE_PATH, params=authorize_params(state=state, shop="42")), "seller"
        )

        params = redirect_params(await press(http, consent, "consent"))

        assert params["state"] == state
        assert params["shop"] == "42"

    async def test_an_already_encoded_state_comes_back_unchanged(self, http: httpx.AsyncClient) -> None:
        query = f"response_type=code&client_id={CLIENT_ID}&redirect_uri={REDIRECT_URI}&state=abc%2Fdef%3D"
        consent = await log_in(http, await http.get(f"{AUTHORIZE_PATH}?{query}"), "seller")

        location = (await press(http, consent, "consent")).headers["location"]

        assert location.endswith("&state=abc%2Fdef%3D")

    async def test_plain_pkce_is_refused_on_the_redirect(self, http: httpx.AsyncClient) -> None:
        params = authorize_params(code_challenge="x" * 43, code_challenge_method="plain", state="p")

        response = await http.get(AUTHORIZE_PATH, params=params)

        assert response.status_code == 302
        assert response.headers["location"].startswith(REDIRECT_URI + "?")
        assert redirect_params(response) | {"error_description": ""} == {
            "error": "invalid_request",
            "error_description": "",
            "state": "p",
        }

    @pytest.mark.parametrize(
        "pkce_params",
        [
            {"code_challenge": "x" * 43},  # no method means plain
            {"code_challenge_method": "S256"},  # a method without a challenge
            {"code_challenge": "too-short", "code_challenge_method": "S256"},
        ],
    )
    async def test_incomplete_pkce_is_an_invalid_request(
        self, http: httpx.AsyncClient, pkce_params: dict[str, str]
    ) -> None:
        response = await http.get(AUTHORIZE_PATH, params=authorize_params(**pkce_params))

        assert redirect_params(response)["error"] == "invalid_request"

    async def test_response_type_is_required_and_must_be_code(self, http: httpx.AsyncClient) -> None:
        params = authorize_params()
        del params["response_type"]

        missing = await http.get(AUTHORIZE_PATH, params=params)
        token = await http.get(AUTHORIZE_PATH, params=authorize_params(response_type="token"))

        assert redirect_params(missing)["error"] == "invalid_request"
        assert redirect_params(token)["error"] == "unsupported_response_type"

    async def test_an_unknown_scope_goes_to_allegros_own_error_page(self, http: httpx.AsyncClient) -> None:
        response = await http.get(AUTHORIZE_PATH, params=authorize_params(scope="allegro:api:everything"))

        assert response.status_code == 302
        assert response.headers["location"].startswith("/auth/oauth/#error=invalid_scope&")
        assert (await http.get("/auth/oauth/")).status_code == 400


class TestUntrustedRedirectUri:
    @pytest.mark.parametrize(
        "overrides",
        [
            {"redirect_uri": REDIRECT_URI + "/"},
            {"redirect_uri": "http://localhost:8001/oauth/callback"},
            {"redirect_uri": "https://evil.example/oauth/callback"},
            {"redirect_uri": ""},
            {"client_id": "someone-else"},
        ],
    )
    async def test_mismatch_shows_an_error_page_and_never_redirects(
        self, http: httpx.AsyncClient, overrides: dict[str, str]
    ) -> None:
        response = await http.get(AUTHORIZE_PATH, params=authorize_params(**overrides))

        assert response.status_code == 400
        assert "location" not in response.headers
        assert "nie możemy wyświetlić strony" in response.text

    async def test_the_page_names_the_redirect_uri_mismatch(self, http: httpx.AsyncClient) -> None:
        response = await http.get(
            AUTHORIZE_PATH, params=authorize_params(redirect_uri="https://evil.example/")
        )

        assert "Redirect URI mismatch" in response.text

    async def test_a_tampered_form_is_validated_again(self, http: httpx.AsyncClient) -> None:
        consent = await log_in(http, await http.get(AUTHORIZE_PATH, params=authorize_params()), "seller")
        forged = hidden_query(consent.text).replace("localhost%3A8000", "evil.example")

        response = await http.post(AUTHORIZE_PATH, data={"oauth_query": forged, "action": "consent"})

        assert response.status_code == 400
        assert "location" not in response.headers

    async def test_request_values_are_html_escaped(self, http: httpx.AsyncClient) -> None:
        state = '"><script>alert(1)</script>'

        page = await http.get(AUTHORIZE_PATH, params=authorize_params(state=state))

        assert "<script>" not in page.text
        assert dict(httpx.QueryParams(hidden_query(page.text)))["state"] == state
