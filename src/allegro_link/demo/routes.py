"""`GET /demo` and its two assets, plus `POST /demo/owner-token` in dev mode. None of it is in OpenAPI.

The page is a plain API client: everything it shows comes from the public endpoints, called with an
owner JWT that the user pastes, or, in dev mode, that `POST /demo/owner-token` mints for a chosen owner.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator, BaseModel, Field

from allegro_link.demo.owner_token import CannotMint, mint_owner_jwt
from allegro_link.errors import NotFound
from allegro_link.settings import Settings

router = APIRouter(prefix="/demo", include_in_schema=False)

DEV_MODE_PLACEHOLDER = "{{DEV_MODE}}"
OWNER_TOKEN_LIFETIME_SECONDS = 3600

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


def _settings(request: Request) -> Settings:
    settings: Settings = request.state.resources.settings
    return settings


@router.get("", response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    """The "Konta Allegro" panel."""
    dev_mode = "true" if _settings(request).dev_mode else "false"
    html = _asset("index.html").replace(DEV_MODE_PLACEHOLDER, dev_mode)
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get("/panel.js")
async def script() -> Response:
    return Response(_asset("panel.js"), media_type="text/javascript; charset=utf-8", headers=ASSET_HEADERS)


@router.get("/panel.css")
async def stylesheet() -> Response:
    return Response(_asset("panel.css"), media_type="text/css; charset=utf-8", headers=ASSET_HEADERS)


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


@router.post("/owner-token", response_model=OwnerTokenResponse)
async def owner_token(body: OwnerTokenRequest, request: Request, response: Response) -> OwnerTokenResponse:
    """Dev mode only: an owner JWT for any owner id, so the panel can act as that owner."""
    settings = _settings(request)
    if not settings.dev_mode:
        raise NotFound("Owner tokens are minted here in dev mode only.")
    try:
        minted = mint_owner_jwt(settings, body.owner_id, OWNER_TOKEN_LIFETIME_SECONDS)
    except CannotMint as exc:
        raise NotFound(str(exc)) from None
    response.headers["Cache-Control"] = "no-store"
    return OwnerTokenResponse(owner_id=body.owner_id, token=minted.token, expires_at=minted.expires_at)
