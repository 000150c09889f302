"""What a test of the fake needs to play the client: PKCE pairs, the authorize shortcut, token calls."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from html import unescape
from typing import Any

import httpx

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-client-secret"
REDIRECT_URI = "http://localhost:8000/oauth/callback"
ALLEGRO_JSON = "application/vnd.allegro.public.v1+json"
OAUTH_JSON = "application/json;charset=UTF-8"
TOKEN_PATH = "/auth/oauth/token"
AUTHORIZE_PATH = "/auth/oauth/authorize"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def new_pkce() -> Pkce:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def basic(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> dict[str, str]:
    credentials = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def authorize_params(pkce: Pkce | None = None, /, **overrides: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "st-1"}
    if pkce is not None:
        params |= {"code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    return params | overrides


async def get_code(
    http: httpx.AsyncClient, login: str = "seller", pkce: Pkce | None = None, **extra: Any
) -> str:
    """A fresh code for `login` through the JSON shortcut of the authorize flow."""
    body: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "login": login,
        "state": "s",
    }
    if pkce is not None:
        body |= {"code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    response = await http.post("/__fake__/authorize", json=body | extra)
    assert response.status_code == 200, response.text
    code = response.json()["code"]
    assert isinstance(code, str)
    return code


async def exchange(
    http: httpx.AsyncClient, code: str, pkce: Pkce | None = None, *, redirect_uri: str = REDIRECT_URI
) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if pkce is not None:
        form["code_verifier"] = pkce.verifier
    return await http.post(TOKEN_PATH, data=form, headers=basic())


async def tokens_for(http: httpx.AsyncClient, login: str = "seller") -> dict[str, Any]:
    """A token response body for `login`, via the authorize shortcut and a PKCE code exchange."""
    pkce = new_pkce()
    response = await exchange(http, await get_code(http, login, pkce), pkce)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await http.post(TOKEN_PATH, data=form, headers=basic())


async def me(http: httpx.AsyncClient, access_token: str, accept: str | None = ALLEGRO_JSON) -> httpx.Response:
    headers = {"Authorization": f"Bearer {access_token}"}
    if accept is not None:
        headers["Accept"] = accept
    return await http.get("/me", headers=headers)


def hidden_query(html: str) -> str:
    """The OAuth request a login or consent form carries along."""
    match = re.search(r'name="oauth_query" value="([^"]*)"', html)
    assert match is not None, "no hidden oauth_query field"
    return unescape(match.group(1))


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code in (302, 303), response.text
    return dict(httpx.URL(response.headers["location"]).params)
