"""Response helpers: the media types and header habits of Allegro's two hosts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import parse_qsl

from fastapi import Request, Response

# The token endpoint answers plain JSON, except invalid_grant (docs/allegro.md).
OAUTH_JSON = "application/json;charset=UTF-8"
ALLEGRO_JSON = "application/vnd.allegro.public.v1+json"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# For the HTML pages: inline CSS only, no scripts, no framing.
HTML_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def json_response(
    status: int, body: object, media_type: str = OAUTH_JSON, headers: Mapping[str, str] | None = None
) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(content, status_code=status, media_type=media_type, headers=dict(headers or {}))


def oauth_error(status: int, error: str, description: str) -> Response:
    media_type = ALLEGRO_JSON if error == "invalid_grant" else OAUTH_JSON
    return json_response(status, {"error": error, "error_description": description}, media_type, NO_STORE)


def html_response(html: str, status: int = 200) -> Response:
    return Response(html, status_code=status, media_type="text/html", headers=HTML_HEADERS)


async def read_form(request: Request) -> dict[str, str]:
    """The form-urlencoded body as a dict (first value wins); empty for any other content type.

    Never the query string: Allegro reads token parameters from the body only since 2025-09.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    form: dict[str, str] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        form.setdefault(name, value)
    return form
