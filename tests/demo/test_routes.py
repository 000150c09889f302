"""What the service serves for the demo panel, and when (no browser needed)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest

from allegro_link.app import create_app
from allegro_link.demo.owner_token import OwnerTokenMinter
from allegro_link.server import app_factory
from allegro_link.settings import Settings
from tests.support.factories import OWNER_JWT_SECRET, bearer, make_settings
from tests.support.live import lifespan
from tests.support.logs import captured_logs

ASSETS = ("/demo", "/demo/panel.js", "/demo/panel.css")


@asynccontextmanager
async def service(settings: Settings, *, dev: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the demo on; `dev` passes the owner-token minter, as `allegro-link dev` does."""
    minter = OwnerTokenMinter.for_settings(settings) if dev else None
    async with lifespan(create_app(settings, owner_token_minter=minter)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def demo_settings(database_url: str, **overrides: Any) -> Settings:
    return make_settings(database_url, **{"demo_enabled": True, **overrides})


class TestServing:
    @pytest.mark.parametrize("path", ASSETS)
    async def test_nothing_is_served_unless_the_demo_is_enabled(
        self, client: httpx.AsyncClient, path: str
    ) -> None:
        assert (await client.get(path)).status_code == 404
        assert (await client.post("/demo/owner-token", json={"owner_id": "o"})).status_code == 404

    async def test_the_page_is_polish_html_that_loads_nothing_from_elsewhere(self, database_url: str) -> None:
        async with service(demo_settings(database_url)) as http:
            responses = {path: await http.get(path) for path in ASSETS}
        page = responses["/demo"]
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<html lang="pl">' in page.text
        assert "Konta Allegro" in page.text and "Połącz konto Allegro" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        assert responses["/demo/panel.js"].headers["content-type"].startswith("text/javascript")
        assert responses["/demo/panel.css"].headers["content-type"].startswith("text/css")
        for path, response in responses.items():
            assert response.status_code == 200, path
            assert not re.search(r"(src|href)=\"(https?:)?//|@import|url\(", response.text), path
            assert "innerHTML" not in response.text, path

    async def test_the_page_says_whether_it_can_mint_its_own_token(self, database_url: str) -> None:
        for dev in (True, False):
            async with service(demo_settings(database_url), dev=dev) as http:
                page = (await http.get("/demo")).text
            assert f'data-dev-mode="{str(dev).lower()}"' in page

    async def test_demo_routes_stay_out_of_the_openapi_document(self, database_url: str) -> None:
        async with service(demo_settings(database_url)) as http:
            paths = (await http.get("/openapi.json")).json()["paths"]
        assert not [path for path in paths if path.startswith("/demo")]


class TestOwnerToken:
    async def test_dev_mode_mints_a_token_the_api_accepts(self, database_url: str) -> None:
        settings = demo_settings(
            database_url, owner_jwt_issuer="polkurier", owner_jwt_audience="allegro-link"
        )
        async with service(settings) as http:
            minted = await http.post("/demo/owner-token", json={"owner_id": "owner-7"})
            assert minted.status_code == 200
            assert minted.headers["cache-control"] == "no-store"
            token = minted.json()["token"]
            listed = await http.get("/accounts", headers=bearer(token))
        assert listed.status_code == 200
        claims = jwt.decode(token, OWNER_JWT_SECRET, algorithms=["HS256"], audience="allegro-link")
        assert (claims["sub"], claims["iss"]) == ("owner-7", "polkurier")
        assert 3500 <= claims["exp"] - claims["iat"] <= 3600

    async def test_without_the_minter_there_is_no_token_to_be_had(self, database_url: str) -> None:
        async with service(demo_settings(database_url), dev=False) as http:
            response = await http.post("/demo/owner-token", json={"owner_id": "owner-7"})
        assert response.status_code in (404, 405)
        assert "token" not in response.json()

    @pytest.mark.parametrize("owner_id", ["", " padded", "tab\there", "x" * 201])
    async def test_owner_ids_the_api_would_refuse_are_422(self, database_url: str, owner_id: str) -> None:
        async with service(demo_settings(database_url)) as http:
            response = await http.post("/demo/owner-token", json={"owner_id": owner_id})
        assert response.status_code == 422


class TestServeNeverMints:
    """`serve` builds its app from the environment alone, and no variable can give it the minter."""

    @pytest.fixture
    def serve_environment(self, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        settings = make_settings(database_url)
        for name in [name for name in os.environ if name.startswith("ALLEGRO_LINK_")]:
            monkeypatch.delenv(name)
        monkeypatch.chdir("/")  # no .env
        values = {
            "DATABASE_URL": database_url,
            "ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
            "CLIENT_ID": settings.client_id,
            "CLIENT_SECRET": settings.client_secret.get_secret_value(),
            "REDIRECT_URI": settings.redirect_uri,
            "RETURN_URL_ALLOWLIST": ",".join(settings.return_url_allowlist),
            "OWNER_JWT_SECRET": OWNER_JWT_SECRET,
            "KEEPALIVE_ENABLED": "false",
            # What used to turn minting on, and anything else that sounds like it.
            "DEMO_ENABLED": "true",
            "DEV_MODE": "true",
            "DEV": "true",
            "OWNER_TOKEN_MINTING": "true",
        }
        for name, value in values.items():
            monkeypatch.setenv(f"ALLEGRO_LINK_{name}", value)

    @pytest.mark.usefixtures("serve_environment")
    async def test_dev_variables_give_serve_no_minting_route(self) -> None:
        with captured_logs():  # app_factory configures logging as serve does; this puts it back
            app = app_factory()
        async with lifespan(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                minted = await http.post("/demo/owner-token", json={"owner_id": "victim"})
                linked = await http.get("/demo/linked", params={"link_session": "x"})
                page = await http.get("/demo")
        assert minted.status_code in (404, 405)
        assert "token" not in minted.json()
        assert linked.status_code == 404
        # The demo itself is on, and asks for a pasted JWT.
        assert page.status_code == 200
        assert 'data-dev-mode="false"' in page.text


class TestLinkedPage:
    async def test_shows_the_link_session_escaped_and_completes_nothing(self, database_url: str) -> None:
        async with service(demo_settings(database_url)) as http:
            response = await http.get(
                "/demo/linked", params={"allegro_link": "complete", "link_session": "<b>ls-1</b>"}
            )
        assert response.status_code == 200
        assert "&lt;b&gt;ls-1&lt;/b&gt;" in response.text and "<b>ls-1" not in response.text
        assert "http://testserver/oauth/complete" in response.text
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "<script" not in response.text
