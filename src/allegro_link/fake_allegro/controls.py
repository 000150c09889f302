"""Test controls of the fake Allegro, mounted under `/__fake__/` only when `controls_enabled` (else 404).

JSON in, JSON out; a malformed body gets 422. Logins are matched ignoring case.

- `POST /__fake__/users` `{"login", "id"?, "email"?, "firstName"?, "lastName"?,
  "company"?: {"name", "taxId"}, "features"?: [..]}` → 201 the user as `/me` shows it; 200 with the
  existing user if the login is known; 409 if `id` is taken or contradicts the existing user. Without
  `id`, the id is a numeric string derived from the login (the same login gets the same id in every
  fake instance).
- `GET /__fake__/users/{login}` → 200 the user, or 404.
- `POST /__fake__/users/{login}/revoke` `{"client_id"?}` → 200 `{"revoked_sessions": n}`: the user
  removes the app (from all clients when `client_id` is left out). Their refresh tokens then get 401
  `Unauthorized`, their access tokens 401 `invalid_token` on `/me`. A new authorization works again.
- `POST /__fake__/users/{login}/expire` `{"what": "access"|"refresh"|"both"}` → 200
  `{"expired": {"access": n, "refresh": n}}`: the user's unexpired tokens expire now (fake clock).
- `POST /__fake__/faults` `{"endpoint": "token"|"me",
  "kind": "status"|"timeout"|"delay"|"hold"|"reset"|"truncate", "status": 503, "count": 1,
  "delay_seconds": float?, "retry_after": int?}` → 201 `{"pending": {...}}`.
  The next `count` calls to that endpoint fail that way; faults queue up in order.
  - `status`: answer that status: 502/503/504 with an HTML body (like a load balancer), 429 with
    `token_creation_rate_limit_exceeded` on the token endpoint, others with a JSON body; plus
    `Retry-After: retry_after` when given.
  - `timeout` (default 30 s) and `delay` (default 1 s): sleep in real time, then answer normally. The call
    is processed after the sleep even if the client has given up, like a request whose answer got lost.
  - `hold`: wait until `POST /__fake__/faults/release` (at most `delay_seconds`, default 30 s), then
    answer normally. For tests that need a call kept at Allegro until something else has happened,
    however slow the machine is.
  - `reset`: over real HTTP the connection is aborted without any response. In-process
    (httpx.ASGITransport) `httpx.RemoteProtocolError` is raised instead, which is what httpx raises for
    a dropped connection.
  - `truncate`: the call is processed normally (a refresh rotates the tokens), but only the first half
    of the answer's body is sent: truncated JSON, as when a proxy cuts the response short.

  Faulted calls count in the stats.
- `DELETE /__fake__/faults` → 204, drops pending faults (and releases held calls).
- `POST /__fake__/faults/release` → 204: calls held by `hold` faults go on, and so do the later calls
  those faults would have held.
- `POST /__fake__/clock` `{"advance_seconds": float >= 0}` → 200 `{"now": epoch seconds}`: fast-forward
  the clock used for every expiry. `GET /__fake__/clock` → 200 `{"now": ...}`.
- `GET /__fake__/stats` → 200 `{"token_calls": {"authorization_code", "refresh_token", "total"},
  "me_calls", "refresh_by_user": {login: n}, "me_by_user": {login: n}}`, counting every call received.
  `total` includes other or missing grant types; `refresh_by_user` counts refresh calls whose token this
  fake issued; `me_by_user` counts the successful `/me` answers (what Allegro's 90-day rule calls use).
- `POST /__fake__/reset` → 204: back to the state right after start: the configured clients only, no
  users, browser sessions, codes, tokens, faults or counters, clock offset zero.
- `POST /__fake__/clients` `{"client_id", "client_secret", "redirect_uris": [..], "scopes"?: [..],
  "name"?}` → 201 `{"client_id", "redirect_uris", "scopes"}`: register (or replace) a client.
- `POST /__fake__/authorize` `{"client_id", "redirect_uri", "login", "state"?, "code_challenge"?,
  "code_challenge_method"?, "scope"?, "prompt"?, "response_type"?: "code", "extra"?: {name: value},
  "deny"?: false}` → 200 `{"redirect": url, "code": str|null}`: the HTML flow without the HTML (the
  user is created if new, then consents, or cancels when `deny`), with the same validation. Errors
  that Allegro reports on the redirect come back as that redirect (`code` null). An unknown client or
  redirect URI → 400 `{"error": "authorize_error_page", "detail": ...}`, where a browser would get
  the error page.
"""

from __future__ import annotations

import threading
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from allegro_link.fake_allegro.authorize import AuthorizeErrorPage, AuthorizeErrorRedirect, parse_authorize
from allegro_link.fake_allegro.config import ALL_SCOPES, FakeClient
from allegro_link.fake_allegro.faults import Fault
from allegro_link.fake_allegro.models import User, UserConflict
from allegro_link.fake_allegro.store import FakeStore

DEFAULT_DELAYS = {"timeout": 30.0, "delay": 1.0, "hold": 30.0}
AUTHORIZE_QUERY_FIELDS = {
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "prompt",
    "code_challenge",
    "code_challenge_method",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CompanyIn(_Body):
    name: str | None = None
    tax_id: str | None = Field(default=None, alias="taxId")


class UserIn(_Body):
    login: Annotated[str, Field(min_length=1, max_length=64)]
    id: Annotated[str | None, Field(pattern=r"^[0-9]{1,19}$")] = None
    email: str | None = None
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    company: CompanyIn | None = None
    features: list[str] = Field(default_factory=list)


class RevokeIn(_Body):
    client_id: str | None = None


class ExpireIn(_Body):
    what: Literal["access", "refresh", "both"] = "both"


class FaultIn(_Body):
    endpoint: Literal["token", "me"]
    kind: Literal["status", "timeout", "delay", "hold", "reset", "truncate"]
    status: Annotated[int, Field(ge=400, le=599)] = 503
    count: Annotated[int, Field(ge=1, le=10_000)] = 1
    delay_seconds: Annotated[float | None, Field(ge=0, le=600)] = None
    retry_after: Annotated[int | None, Field(ge=0)] = None


class ClockIn(_Body):
    advance_seconds: Annotated[float, Field(ge=0)]


class ClientIn(_Body):
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: Annotated[str, Field(min_length=1)]
    redirect_uris: Annotated[list[str], Field(min_length=1)]
    scopes: list[str] | None = None
    name: str | None = None


class AuthorizeIn(_Body):
    client_id: str
    redirect_uri: str
    login: Annotated[str, Field(min_length=1, max_length=64)]
    state: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    scope: str | None = None
    prompt: str | None = None
    response_type: str = "code"
    extra: dict[str, str] = Field(default_factory=dict)
    deny: bool = False


class ControlRoutes:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/__fake__")
        add = router.add_api_route
        add("/users", self.create_user, methods=["POST"], status_code=201)
        add("/users/{login}", self.get_user, methods=["GET"])
        add("/users/{login}/revoke", self.revoke, methods=["POST"])
        add("/users/{login}/expire", self.expire, methods=["POST"])
        add("/faults", self.add_fault, methods=["POST"], status_code=201)
        add("/faults", self.clear_faults, methods=["DELETE"], status_code=204)
        add("/faults/release", self.release_faults, methods=["POST"], status_code=204)
        add("/clock", self.clock, methods=["GET"])
        add("/clock", self.advance_clock, methods=["POST"])
        add("/stats", self.stats, methods=["GET"])
        add("/reset", self.reset, methods=["POST"], status_code=204)
        add("/clients", self.register_client, methods=["POST"], status_code=201)
        add("/authorize", self.authorize, methods=["POST"], response_model=None)
        return router

    def _known_user(self, login: str) -> User:
        user = self.store.user_by_login(login)
        if user is None:
            raise HTTPException(404, f"no user {login!r}")
        return user

    async def create_user(self, body: UserIn, response: Response) -> dict[str, object]:
        """Create a user (or return the existing one with that login)."""
        company = body.company or CompanyIn()
        try:
            user, created = self.store.create_user(
                body.login,
                user_id=body.id,
                email=body.email,
                first_name=body.first_name,
                last_name=body.last_name,
                company_name=company.name,
                company_tax_id=company.tax_id,
                features=body.features,
            )
        except UserConflict as exc:
            raise HTTPException(409, str(exc)) from None
        if not created:
            response.status_code = 200
        return user.as_me()

    async def get_user(self, login: str) -> dict[str, object]:
        """A user as /me shows it."""
        return self._known_user(login).as_me()

    async def revoke(self, login: str, body: RevokeIn | None = None) -> dict[str, object]:
        """The user removes the app: refresh → 401, access tokens dead."""
        user = self._known_user(login)
        return {"revoked_sessions": self.store.revoke(user, body.client_id if body else None)}

    async def expire(self, login: str, body: ExpireIn) -> dict[str, object]:
        """Expire the user's current tokens now."""
        return {"expired": self.store.expire(self._known_user(login), body.what)}

    async def add_fault(self, body: FaultIn) -> dict[str, object]:
        """Make the next `count` calls to an endpoint fail."""
        delay = body.delay_seconds if body.delay_seconds is not None else DEFAULT_DELAYS.get(body.kind, 0.0)
        fault = Fault(
            kind=body.kind,
            remaining=body.count,
            status=body.status,
            delay_seconds=delay,
            retry_after=body.retry_after,
            gate=threading.Event() if body.kind == "hold" else None,
        )
        return {"pending": self.store.add_fault(body.endpoint, fault)}

    async def release_faults(self) -> None:
        """Let the calls held by `hold` faults go on."""
        self.store.release_held()

    async def clear_faults(self) -> None:
        """Drop every pending fault."""
        self.store.clear_faults()

    async def clock(self) -> dict[str, object]:
        """The fake's current time (epoch seconds)."""
        return {"now": self.store.now()}

    async def advance_clock(self, body: ClockIn) -> dict[str, object]:
        """Fast-forward the fake's clock."""
        return {"now": self.store.advance_clock(body.advance_seconds)}

    async def stats(self) -> dict[str, object]:
        """Calls received by the token endpoint and /me."""
        return self.store.stats()

    async def reset(self) -> None:
        """Forget everything but the configured clients."""
        self.store.reset()

    async def register_client(self, body: ClientIn) -> dict[str, object]:
        """Register (or replace) an app."""
        scopes = body.scopes if body.scopes is not None else list(ALL_SCOPES)
        unknown = sorted(set(scopes) - set(ALL_SCOPES))
        if unknown:
            raise HTTPException(422, f"unknown scopes: {', '.join(unknown)}")
        client = FakeClient(
            client_id=body.client_id,
            client_secret=body.client_secret,
            redirect_uris=list(body.redirect_uris),
            scopes=tuple(scopes),
            name=body.name,
        )
        self.store.register_client(client)
        return {"client_id": body.client_id, "redirect_uris": body.redirect_uris, "scopes": scopes}

    async def authorize(self, body: AuthorizeIn) -> Response | dict[str, object]:
        """The authorize flow without HTML: log in as `login` and consent (or cancel)."""
        fields = body.model_dump(include=AUTHORIZE_QUERY_FIELDS)
        pairs = [(name, value) for name, value in fields.items() if isinstance(value, str)]
        pairs += list(body.extra.items())
        try:
            request = parse_authorize(pairs, self.store.client)
        except AuthorizeErrorPage as exc:
            return JSONResponse({"error": "authorize_error_page", "detail": exc.detail}, status_code=400)
        except AuthorizeErrorRedirect as exc:
            return {"redirect": exc.location, "code": None}
        if body.deny:
            return {"redirect": request.error_location("access_denied", "User denied access"), "code": None}
        try:
            user = self.store.sign_in(body.login)
        except UserConflict as exc:
            raise HTTPException(422, str(exc)) from None
        code = self.store.issue_code(
            client_id=request.client.client_id,
            redirect_uri=request.redirect_uri,
            user=user,
            scopes=request.scopes,
            code_challenge=request.code_challenge,
        )
        return {"redirect": request.success_location(code), "code": code}
