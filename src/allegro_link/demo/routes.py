"""`GET /demo` and its two assets; with an owner-token minter (only `allegro-link dev` has one) also
`POST /demo/owner-token` and `GET /demo/linked`. None of it is in OpenAPI.

The page is a plain API client: everything it shows comes from the public endpoints, called with an
owner JWT that the user pastes, or, under `allegro-link dev`, that `POST /demo/owner-token` mints.
"""

from __future__ import annotations

import html
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator, BaseModel, Field

from allegro_link.demo.owner_token import OwnerTokenMinter

DEV_MODE_PLACEHOLDER = "{{DEV_MODE}}"
OWNER_TOKEN_LIFETIME_SECONDS = 3600
LINKED_PATH = "/demo/linked"

# The page loads nothing from elsewhere and runs no inline script: a CSP says so to the browser too.
# no-referrer: the address may still carry a link_session for a moment after the return from Allegro.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
ASSET_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


@cache
def _asset(name: str) -> str:
    return (files("allegro_link.demo") / "static" / name).read_text(encoding="utf-8")


def _check_owner_id(value: str) -> str:
    if not value.isprintable() or value != value.strip():
        raise ValueError("must be printable, without leading or trailing spaces")
    return value


class OwnerTokenRequest(BaseModel):
    owner_id: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_check_owner_id)]


class OwnerTokenResponse(BaseModel):
    owner_id: str
    token: str
    expires_at: datetime


def demo_router(minter: OwnerTokenMinter | None) -> APIRouter:
    """The demo routes; the minting ones exist only when `minter` is given."""
    router = APIRouter(prefix="/demo", include_in_schema=False)
    dev_mode = "true" if minter is not None else "false"

    @router.get("", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        """The "Konta Allegro" panel."""
        return HTMLResponse(
            _asset("index.html").replace(DEV_MODE_PLACEHOLDER, dev_mode), headers=PAGE_HEADERS
        )

    @router.get("/panel.js")
    async def script() -> Response:
        return Response(
            _asset("panel.js"), media_type="text/javascript; charset=utf-8", headers=ASSET_HEADERS
        )

    @router.get("/panel.css")
    async def stylesheet() -> Response:
        return Response(_asset("panel.css"), media_type="text/css; charset=utf-8", headers=ASSET_HEADERS)

    if minter is not None:
        _add_dev_routes(router, minter)
    return router


def _add_dev_routes(router: APIRouter, minter: OwnerTokenMinter) -> None:
    @router.post("/owner-token", response_model=OwnerTokenResponse)
    async def owner_token(body: OwnerTokenRequest, response: Response) -> OwnerTokenResponse:
        """An owner JWT for any owner id, so that the panel can act as that owner."""
        minted = minter.mint(body.owner_id, OWNER_TOKEN_LIFETIME_SECONDS)
        response.headers["Cache-Control"] = "no-store"
        return OwnerTokenResponse(owner_id=body.owner_id, token=minted.token, expires_at=minted.expires_at)

    @router.get("/linked", response_class=HTMLResponse)
    async def linked(request: Request) -> HTMLResponse:
        """A `return_to` for trying the API by hand: shows what Allegro's round trip brought back.

        Unlike the panel, it completes nothing, so the `link_session` it shows is still usable with
        `POST /oauth/complete` (the dev banner's curl example).
        """
        params = request.query_params
        rows = "".join(
            f"<tr><th>{html.escape(name)}</th><td><code>{html.escape(params[name])}</code></td></tr>"
            for name in ("allegro_link", "link_session", "error")
            if name in params
        )
        complete = str(request.base_url).rstrip("/") + "/oauth/complete"
        body = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>allegro-link: back from '
            "Allegro</title></head><body><h1>Back from Allegro</h1>"
            f"<table>{rows or '<tr><td>No link result in the address.</td></tr>'}</table>"
            "<p>Complete the link as the owner who started it (the session is single-use and expires):</p>"
            f"<pre>curl -s -X POST {html.escape(complete)} -H 'Authorization: Bearer &lt;owner JWT&gt;' \\\n"
            "     -H 'Content-Type: application/json' -d '{\"link_session\": \"&lt;link_session&gt;\"}'</pre>"
            "</body></html>"
        )
        return HTMLResponse(body, headers=PAGE_HEADERS)
