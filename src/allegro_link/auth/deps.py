"""Who is calling: an owner (JWT) or an internal service (API key), as FastAPI dependencies.

No or invalid credentials → 401; valid credentials without the right → 403.
API keys are recognisable by their `alk_` prefix, so one Bearer header serves both kinds of caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from allegro_link.auth.api_keys import ServicePrincipal
from allegro_link.auth.owner import OwnerPrincipal
from allegro_link.auth.scopes import ACCOUNTS_READ, EVENTS_READ, KEY_MARKER, TOKENS_READ
from allegro_link.errors import Forbidden, Unauthenticated
from allegro_link.ops.middleware import CALLER_SCOPE_KEY
from allegro_link.resources import Resources, resources

MAX_CREDENTIAL_LENGTH = 8192
# What every route behind one of the roles below may answer (OpenAPI `responses=`), before its own.
AUTH_ERRORS = (Unauthenticated, Forbidden)
_SEND_CREDENTIALS = "Send an owner JWT or a service API key as a Bearer token."

Principal = OwnerPrincipal | ServicePrincipal
P = TypeVar("P", bound=Principal)


async def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None:
        raise Unauthenticated(_SEND_CREDENTIALS)
    return await authenticate(resources(request), credentials.scheme, credentials.credentials)


async def authenticate(app: Resources, scheme: str, token: str) -> Principal:
    """Who sent `Authorization: <scheme> <token>`; Unauthenticated when nobody we know.

    Also for the token route's fast path (tokens/fast_path.py), which parses the header itself.
    """
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(_SEND_CREDENTIALS)
    if len(token) > MAX_CREDENTIAL_LENGTH:
        raise Unauthenticated("The credentials are not valid.")
    if token.startswith(KEY_MARKER):
        principal = await app.api_keys.verify(token)
        if principal is None:
            raise Unauthenticated("The API key is not valid.")
        return principal
    return await app.owner_tokens.verify(token)


def _owner(caller: Principal) -> OwnerPrincipal:
    if not isinstance(caller, OwnerPrincipal):
        raise Forbidden("This endpoint is for account owners.")
    return caller


def _account_reader(caller: Principal) -> Principal:
    if isinstance(caller, ServicePrincipal) and not caller.has_scope(ACCOUNTS_READ):
        raise Forbidden(f"The API key lacks the {ACCOUNTS_READ} scope.")
    return caller


def token_reader(caller: Principal) -> ServicePrincipal:
    if not isinstance(caller, ServicePrincipal):
        raise Forbidden("Owners never read tokens; this endpoint is for internal services.")
    if not caller.has_scope(TOKENS_READ):
        raise Forbidden(f"The API key lacks the {TOKENS_READ} scope.")
    return caller


def _event_reader(caller: Principal) -> ServicePrincipal:
    if not isinstance(caller, ServicePrincipal):
        raise Forbidden("The event feed is for internal services.")
    if not caller.has_scope(EVENTS_READ):
        raise Forbidden(f"The API key lacks the {EVENTS_READ} scope.")
    return caller


class _BearerRole(HTTPBearer, Generic[P]):
    """The Bearer credential, who it belongs to, and the role check, as one dependency.

    One dependency per role rather than a chain (credentials → caller → role): the token endpoint is
    on every internal call to Allegro, and FastAPI pays a resolution step per dependency per request.
    It is still an HTTPBearer, so OpenAPI documents the same `HTTPBearer` security scheme.
    """

    def __init__(self, role: Callable[[Principal], P]) -> None:
        super().__init__(
            scheme_name="HTTPBearer",
            description=f"An owner JWT, or a service API key ({KEY_MARKER}…)",
            auto_error=False,
        )
        self._role = role

    async def __call__(self, request: Request) -> P:  # type: ignore[override]
        credentials = await super().__call__(request)
        principal = await _authenticate(request, credentials)
        # For the access log, also when the role check below refuses the caller.
        request.scope[CALLER_SCOPE_KEY] = actor(principal)
        return self._role(principal)


Owner = Annotated[OwnerPrincipal, Depends(_BearerRole(_owner))]
AccountReader = Annotated[Principal, Depends(_BearerRole(_account_reader))]
TokenReader = Annotated[ServicePrincipal, Depends(_BearerRole(token_reader))]
EventReader = Annotated[ServicePrincipal, Depends(_BearerRole(_event_reader))]


def owner_scope(caller: Principal) -> str | None:
    """The owner whose accounts `caller` may see; None means every owner (a service)."""
    return caller.owner_id if isinstance(caller, OwnerPrincipal) else None


def actor(caller: Principal) -> str:
    """How the event log names who did something."""
    return f"owner:{caller.owner_id}" if isinstance(caller, OwnerPrincipal) else f"service:{caller.name}"
