"""`GET /accounts/{id}/token` answered without FastAPI's routing and parameter resolution.

Internal services ask for a token before each of their calls to Allegro, so this one request is most
of the service's traffic, and FastAPI's work around it (matching the path against every route,
resolving the parameters and the auth dependency, building a Response) cost about as much as reading
and opening the token (docs/performance.md). This pure ASGI layer answers the request when it comes in
its usual, well-formed shape, through the same code as the route: the same authentication
(`auth.deps.authenticate`, `token_reader`), the same broker, the same body and audit record
(`routes.token_body`). Problems raised on the way are answered by the app's own exception handlers.

Anything else (another path or method, a path or query it does not parse exactly, a credential that
is not an API key) goes on to the app unchanged, where the route in routes.py answers it as it always
has, so every refusal and validation error stays the route's. The route also documents the endpoint.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from allegro_link.auth.deps import actor, authenticate, token_reader
from allegro_link.ops.middleware import CALLER_SCOPE_KEY
from allegro_link.resources import scope_resources
from allegro_link.tokens.routes import (
    MIN_VALID_FOR_DEFAULT,
    MIN_VALID_FOR_MAX,
    NO_STORE,
    router,
    token_body,
)

# The canonical form only (as clients format a UUID); other spellings FastAPI accepts go to the route.
_PATH = re.compile(r"/accounts/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/token")
_QUERY = re.compile(rb"min_valid_for=([0-9]{1,4})")
# An API key in a Bearer header; an owner's JWT, another scheme or odd spacing go to the route.
_API_KEY_HEADER = re.compile(rb"[Bb]earer (alk_[\x21-\x7e]+)")
_HEADERS = [(name.lower().encode(), value.encode()) for name, value in NO_STORE.items()]
_JSON = (b"content-type", b"application/json")

# The documented route, which answers what this layer does not, for the metrics' route label.
TOKEN_ROUTE = next(r for r in router.routes if isinstance(r, APIRoute) and r.operation_id == "tokens-get")

# As Starlette types exception handlers (a handler may be sync; ours are not).
Handler = Callable[[Request, Any], Response | Awaitable[Response]]


class TokenFastPath:
    """Pure ASGI: the token request's common case, in front of `app` (which answers the rest)."""

    def __init__(self, app: ASGIApp, route: BaseRoute, handlers: Mapping[Any, Handler]) -> None:
        self.app = app
        # The documented route, for the request metrics' route label (ops/middleware.py).
        self._route = route
        # What ExceptionMiddleware would answer with; the rest (500) is left to ServerErrorMiddleware.
        self._handlers = {
            kind: handler
            for kind, handler in handlers.items()
            if isinstance(kind, type) and kind is not Exception
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = _parse(scope) if scope["type"] == "http" else None
        if request is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        account_id, min_valid_for, api_key = request
        try:
            body = await _serve(scope, account_id, min_valid_for, api_key)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = handler(Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)
            return
        headers = [*_HEADERS, (b"content-length", str(len(body)).encode()), _JSON]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _handler_for(self, exc: Exception) -> Handler | None:
        for kind in type(exc).__mro__:
            if kind in self._handlers:
                return self._handlers[kind]
        return None


async def _serve(scope: Scope, account_id: uuid.UUID, min_valid_for: int, api_key: str) -> bytes:
    app = scope_resources(scope)
    principal = await authenticate(app, "Bearer", api_key)
    scope[CALLER_SCOPE_KEY] = actor(principal)  # for the access log, as the route's dependency does
    caller = token_reader(principal)
    issued = await app.tokens.token(account_id, min_valid_for=timedelta(seconds=min_valid_for))
    return token_body(app, issued, caller)


def _parse(scope: Scope) -> tuple[uuid.UUID, int, str] | None:
    """(account id, min_valid_for, API key) of a GET in the usual shape; None sends it to the route."""
    if scope["method"] != "GET" or (path := _PATH.fullmatch(scope["path"])) is None:
        return None
    query = scope["query_string"]
    if not query:
        min_valid_for = MIN_VALID_FOR_DEFAULT
    elif (value := _QUERY.fullmatch(query)) is not None and int(value[1]) <= MIN_VALID_FOR_MAX:
        min_valid_for = int(value[1])
    else:
        return None
    for name, header in scope["headers"]:
        if name == b"authorization":  # the first one, as Starlette's headers.get() takes
            key = _API_KEY_HEADER.fullmatch(header)
            if key is None:
                return None
            return uuid.UUID(path[1]), min_valid_for, key[1].decode()
    return None
