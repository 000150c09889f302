"""What the service serves for the demo panel, and when (no browser needed)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager

from allegro_link.app import create_app
from allegro_link.settings import Settings
from tests.support.factories import OWNER_JWT_SECRET, bearer, make_settings

ASSETS = ("/demo", "/demo/panel.js", "/demo/panel.css")


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def demo_settings(database_url: str, **overrides: Any) -> Settings:
    return make_settings(database_url, **{"demo_enabled": True, "dev_mode": True, **overrides})


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

    async def test_the_page_says_whether_it_is_in_dev_mode(self, database_url: str) -> None:
        for dev_mode in (True, False):
            async with service(demo_settings(database_url, dev_mode=dev_mode)) as http:
                page = (await http.get("/demo")).text
            assert f'data-dev-mode="{str(dev_mode).lower()}"' in page

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

    async def test_outside_dev_mode_there_is_no_token_to_be_had(self, database_url: str) -> None:
        async with service(demo_settings(database_url, dev_mode=False)) as http:
            response = await http.post("/demo/owner-token", json={"owner_id": "owner-7"})
        assert response.status_code == 404
        assert "token" not in response.json()

    @pytest.mark.parametrize("owner_id", ["", " padded", "tab\there", "x" * 201])
    async def test_owner_ids_the_api_would_refuse_are_422(self, database_url: str, owner_id: str) -> None:
        async with service(demo_settings(database_url)) as http:
            response = await http.post("/demo/owner-token", json={"owner_id": owner_id})
        assert response.status_code == 422
