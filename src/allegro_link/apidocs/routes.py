"""`GET /docs` and its assets, all served by this service.

FastAPI's default `/docs` loads Swagger UI from a CDN (a floating version, no integrity check). That
script would run on the same origin as `/demo`, which keeps an owner JWT in sessionStorage, so a
compromised CDN could read it. Swagger UI's files come instead from the `fastapi-offline` package
(which ships them and nothing we execute besides), and a CSP forbids any other origin. The docs then
also work on an intranet without internet access.
"""

from __future__ import annotations

import html
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from allegro_link.errors import NotFound

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"

# Swagger UI renders with React, which sets element styles (allowed by 'self' for scripts) and its
# stylesheet embeds SVG icons as data: URIs. Nothing else is needed: no inline script, no other origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# Versioned with the installed package, so a day's caching is safe; an upgrade restarts the process.
ASSET_HEADERS = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}

# name served under ASSETS_PATH → (package, file, media type)
ASSETS = {
    "swagger-ui-bundle.js": ("fastapi_offline", "static/swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("fastapi_offline", "static/swagger-ui.css", "text/css"),
    "favicon.png": ("fastapi_offline", "static/favicon.png", "image/png"),
    "init.js": ("allegro_link.apidocs", "static/init.js", "text/javascript"),
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/init.js"></script>
</body>
</html>
"""


@cache
def _asset(name: str) -> bytes:
    package, path, _ = ASSETS[name]
    resource = files(package)
    for part in path.split("/"):
        resource = resource / part
    return resource.read_bytes()


def docs_router(title: str, openapi_url: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(DOCS_PATH, response_class=HTMLResponse)
    async def docs(request: Request) -> HTMLResponse:
        """Swagger UI for the OpenAPI document."""
        root = request.scope.get("root_path", "").rstrip("/")
        page = PAGE.format(
            title=html.escape(f"{title} - API docs"),
            assets=html.escape(root + ASSETS_PATH),
            openapi_url=html.escape(root + openapi_url),
        )
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @router.get(ASSETS_PATH + "/{name}")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise NotFound("No such asset.")
        media_type = ASSETS[name][2]
        if media_type.startswith("text/"):
            media_type += "; charset=utf-8"
        return Response(_asset(name), media_type=media_type, headers=ASSET_HEADERS)

    return router
