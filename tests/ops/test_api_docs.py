"""`/docs` serves Swagger UI from the package, under a CSP that allows no other origin."""

from __future__ import annotations

import re

import httpx
import pytest

ASSETS = {
    "/docs/assets/swagger-ui-bundle.js": "text/javascript",
    "/docs/assets/swagger-ui.css": "text/css",
    "/docs/assets/init.js": "text/javascript",
    "/docs/assets/favicon.png": "image/png",
}


class TestDocsPage:
    async def test_the_page_references_only_its_own_origin(self, client: httpx.AsyncClient) -> None:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        references = re.findall(r"(?:src|href|data-openapi-url)=\"([^\"]*)\"", page.text)
        assert sorted(references) == sorted([*ASSETS, "/openapi.json"])
        assert "//" not in page.text.replace("<!doctype", "")  # no scheme-relative or absolute URL
        assert not re.search(r"<script>|<script [^>]*>[^<]", page.text), "no inline script"

    async def test_a_strict_policy_comes_with_it(self, client: httpx.AsyncClient) -> None:
        headers = (await client.get("/docs")).headers
        policy = dict(
            directive.strip().split(" ", 1) for directive in headers["content-security-policy"].split(";")
        )
        assert policy["default-src"] == "'none'"
        assert policy["script-src"] == "'self'"
        assert policy["connect-src"] == "'self'"
        assert policy["frame-ancestors"] == "'none'"
        assert all("http" not in sources and "*" not in sources for sources in policy.values())
        assert headers["x-content-type-options"] == "nosniff"

    @pytest.mark.parametrize(("path", "media_type"), ASSETS.items())
    async def test_every_asset_is_served_from_the_package(
        self, client: httpx.AsyncClient, path: str, media_type: str
    ) -> None:
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media_type)
        assert response.content

    async def test_the_bundle_is_swagger_ui(self, client: httpx.AsyncClient) -> None:
        bundle = (await client.get("/docs/assets/swagger-ui-bundle.js")).text
        assert "SwaggerUIBundle" in bundle

    async def test_other_names_under_assets_are_not_found(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/docs/assets/..%2F..%2Fsettings.py")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"

    async def test_redoc_which_would_need_a_cdn_is_not_served(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/redoc")).status_code == 404
