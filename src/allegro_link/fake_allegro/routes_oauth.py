"""The auth host: `/auth/oauth/authorize` (HTML login and consent) and `/auth/oauth/token`."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from allegro_link.fake_allegro import pages
from allegro_link.fake_allegro.authorize import (
    AuthorizeErrorPage,
    AuthorizeErrorRedirect,
    AuthorizeRequest,
    parse_authorize,
)
from allegro_link.fake_allegro.faults import apply_fault, damaged
from allegro_link.fake_allegro.models import InvalidGrant, IssuedTokens, Unauthorized
from allegro_link.fake_allegro.params import TokenForm
from allegro_link.fake_allegro.responses import (
    NO_STORE,
    OAUTH_JSON,
    html_response,
    json_response,
    oauth_error,
    read_form,
)
from allegro_link.fake_allegro.store import FakeStore

SESSION_COOKIE = "fake_allegro_session"
TOKEN_PATH = "/auth/oauth/token"  # noqa: S105 - a path, not a secret
MAX_LOGIN_LENGTH = 64


class OAuthRoutes:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route(pages.AUTHORIZE_PATH, self.authorize_page, methods=["GET"])
        router.add_api_route(pages.AUTHORIZE_PATH, self.authorize_action, methods=["POST"])
        router.add_api_route("/auth/oauth/", self.authorize_error_landing, methods=["GET"])
        router.add_api_route(TOKEN_PATH, self.token_get, methods=["GET"])
        router.add_api_route(TOKEN_PATH, self.token, methods=["POST"])
        return router

    def _parse(self, query: str) -> AuthorizeRequest | Response:
        try:
            return parse_authorize(parse_qsl(query, keep_blank_values=True), self.store.client)
        except AuthorizeErrorPage as exc:
            return html_response(pages.error_page(exc.detail), status=400)
        except AuthorizeErrorRedirect as exc:
            return RedirectResponse(exc.location, status_code=302)

    async def authorize_page(self, request: Request) -> Response:
        """The login page, or the consent page when this browser is logged in."""
        parsed = self._parse(request.url.query)
        if isinstance(parsed, Response):
            return parsed
        user = self.store.browser_user(request.cookies.get(SESSION_COOKIE))
        if user is None:
            return html_response(pages.login_page(oauth_query=parsed.query, client_name=_name(parsed)))
        page = pages.consent_page(
            oauth_query=parsed.query,
            client_name=_name(parsed),
            login=user.login,
            scopes=parsed.scopes,
            confirm_account=parsed.confirm_account,
        )
        return html_response(page)

    async def authorize_action(self, request: Request) -> Response:
        """The buttons of the login and consent forms."""
        form = await read_form(request)
        # The hidden field is as untrusted as the original query: validate it all over again.
        parsed = self._parse(form.get(pages.OAUTH_QUERY_FIELD, ""))
        if isinstance(parsed, Response):
            return parsed
        cookie = request.cookies.get(SESSION_COOKIE)
        action = form.get("action")
        if action == "login":
            return self._log_in(parsed, form.get("login", "").strip())
        if action == "switch":
            # "Zmień konto": log this browser out and ask for a login again, same OAuth request.
            self.store.end_browser_session(cookie)
            response = RedirectResponse(_page_url(parsed), status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        if action == "cancel":
            return RedirectResponse(
                parsed.error_location("access_denied", "User denied access"), status_code=303
            )
        if action == "consent":
            return self._consent(parsed, cookie)
        return html_response(pages.error_page("Nieznana akcja formularza"), status=400)

    def _log_in(self, parsed: AuthorizeRequest, login: str) -> Response:
        if not login or len(login) > MAX_LOGIN_LENGTH or any(char.isspace() for char in login):
            page = pages.login_page(
                oauth_query=parsed.query,
                client_name=_name(parsed),
                error="Podaj login lub e-mail (bez spacji, do 64 znaków).",
            )
            return html_response(page)
        # Any password works: the fake has no passwords, only people to be.
        user = self.store.sign_in(login)
        response = RedirectResponse(_page_url(parsed), status_code=303)
        cookie = self.store.start_browser_session(user)
        response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="lax", path="/")
        return response

    def _consent(self, parsed: AuthorizeRequest, cookie: str | None) -> Response:
        user = self.store.browser_user(cookie)
        if user is None:
            return RedirectResponse(_page_url(parsed), status_code=303)
        code = self.store.issue_code(
            client_id=parsed.client.client_id,
            redirect_uri=parsed.redirect_uri,
            user=user,
            scopes=parsed.scopes,
            code_challenge=parsed.code_challenge,
        )
        return RedirectResponse(parsed.success_location(code), status_code=303)

    async def authorize_error_landing(self) -> Response:
        """Where an invalid scope sends the browser; the error is in the URL fragment."""
        return html_response(pages.oauth_error_landing(), status=400)

    async def token_get(self) -> Response:
        """Allegro dropped GET on the token endpoint in 2025-09."""
        body = {"error": "method_not_allowed", "error_description": "Request method 'GET' not supported"}
        return json_response(405, body, OAUTH_JSON, {"Allow": "POST"})

    async def token(self, request: Request) -> Response:
        """The token endpoint: authorization_code and refresh_token grants."""
        form = TokenForm.parse(await read_form(request))
        # Counted on arrival, so calls that a fault then fails still show in the stats.
        self.store.count_token_call(form.grant_type, form.refresh_token)
        fault = self.store.take_fault("token")
        if fault is not None:
            faulted = await apply_fault(fault, "token", request)
            if faulted is not None:
                return faulted
        return damaged(fault, self._grant(request, form))

    def _grant(self, request: Request, form: TokenForm) -> Response:
        grant_type = form.grant_type
        client_id, public = _authenticate(self.store, request.headers.get("authorization"), form)
        if client_id is None:
            return oauth_error(401, "Unauthorized", "Unauthorized")
        if not grant_type:
            return oauth_error(400, "invalid_request", "OAuth 2.0 Parameter: grant_type")
        try:
            if grant_type == "authorization_code":
                if not form.code:
                    return oauth_error(400, "invalid_request", "An authorization code must be supplied.")
                issued = self.store.exchange_code(
                    client_id=client_id,
                    code=form.code,
                    redirect_uri=form.redirect_uri,
                    code_verifier=form.code_verifier,
                    public=public,
                )
            elif grant_type == "refresh_token":
                issued = self.store.refresh(client_id=client_id, refresh_token=form.refresh_token or "")
            else:
                return oauth_error(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")
        except InvalidGrant as exc:
            return oauth_error(400, "invalid_grant", exc.description)
        except Unauthorized:
            return oauth_error(401, "Unauthorized", "Unauthorized")
        return _token_response(issued)


def _name(parsed: AuthorizeRequest) -> str:
    return parsed.client.name or parsed.client.client_id


def _page_url(parsed: AuthorizeRequest) -> str:
    return f"{pages.AUTHORIZE_PATH}?{parsed.query}"


def _authenticate(store: FakeStore, authorization: str | None, form: TokenForm) -> tuple[str | None, bool]:
    """(client id, public) of the caller, or (None, False) when it is not authenticated."""
    if authorization is not None:
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return None, False
        client = store.authenticate_client(*credentials)
        # A client_id in the body must agree with the authenticated one.
        if client is None or (form.client_id is not None and form.client_id != client.client_id):
            return None, False
        return client.client_id, False
    # The PKCE variant from the tutorial: no secret, client_id and code_verifier in the body. Codes
    # only; the store also refuses it for a code issued without a challenge.
    client_id = form.client_id or ""
    if form.grant_type == "authorization_code" and form.code_verifier and store.client(client_id):
        return client_id, True
    return None, False


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # Compared as sent, without percent-decoding, like Spring Security (Allegro's secrets are alphanumeric).
    client_id, separator, secret = decoded.partition(":")
    return (client_id, secret) if separator else None


def _token_response(issued: IssuedTokens) -> Response:
    body = {
        "access_token": issued.access_token,
        "token_type": "bearer",
        "refresh_token": issued.refresh_token,
        "expires_in": issued.expires_in,
        "scope": " ".join(issued.scopes),
        "allegro_api": True,
        "jti": issued.jti,
    }
    return json_response(200, body, OAUTH_JSON, NO_STORE)
