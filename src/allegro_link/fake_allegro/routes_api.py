"""The API host: `GET /me`, with Allegro's header rules and 401/403/406 bodies (docs/allegro.md)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from allegro_link.fake_allegro.faults import apply_fault, damaged
from allegro_link.fake_allegro.responses import ALLEGRO_JSON, OAUTH_JSON, json_response
from allegro_link.fake_allegro.store import FakeStore


class ApiRoutes:
    def __init__(self, store: FakeStore, required_scope: str | None) -> None:
        self.store = store
        self.required_scope = required_scope

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/me", self.me, methods=["GET"])
        return router

    async def me(self, request: Request) -> Response:
        """The user the access token belongs to."""
        self.store.count_me_call()
        fault = self.store.take_fault("me")
        if fault is not None:
            faulted = await apply_fault(fault, "me", request)
            if faulted is not None:
                return faulted
        response = _me(self.store, request, self.required_scope)
        # API responses carry a Trace-Id (support asks for it); the token endpoint's do not.
        response.headers["Trace-Id"] = uuid.uuid4().hex
        return damaged(fault, response)


def _me(store: FakeStore, request: Request, required_scope: str | None) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    # Authentication comes before content negotiation, as in a Spring Security filter chain.
    if scheme.lower() != "bearer" or not token:
        return _auth_error("unauthorized", "Full authentication is required to access this resource")
    check = store.check_access_token(token)
    if check.outcome == "malformed":
        return _auth_error("invalid_token", "Cannot convert access token to JSON")
    if check.outcome == "invalid":
        return _auth_error("invalid_token", "Invalid access token")
    if check.outcome == "expired":
        return _auth_error("invalid_token", f"Access token expired: {token}")
    if required_scope is not None and required_scope not in check.scopes:
        return _api_error(403, "AccessDenied", "Access is denied", "No access to the specified resource.")
    if not _accepts_allegro_json(request.headers.get("accept", "")):
        message = f"Not acceptable. Use 'Accept: {ALLEGRO_JSON}'"
        return _api_error(406, "NotAcceptableException", message, message)
    if check.user is None:  # cannot happen for "ok"; keeps the type checker honest without assert
        return _auth_error("invalid_token", "Invalid access token")
    store.count_me_use(check.user.login)
    return json_response(200, check.user.as_me(), ALLEGRO_JSON)


def _accepts_allegro_json(accept: str) -> bool:
    # The versioned media type must be named: `*/*` or application/json is not enough.
    return any(part.split(";", 1)[0].strip().lower() == ALLEGRO_JSON for part in accept.split(","))


def _auth_error(error: str, description: str) -> Response:
    body = {"error": error, "error_description": description}
    header = f'Bearer error="{error}"' if error == "invalid_token" else "Bearer"
    return json_response(401, body, OAUTH_JSON, {"WWW-Authenticate": header})


def _api_error(status: int, code: str, message: str, user_message: str) -> Response:
    error = {"code": code, "message": message, "details": None, "path": None, "userMessage": user_message}
    return json_response(status, {"errors": [error]}, ALLEGRO_JSON)
