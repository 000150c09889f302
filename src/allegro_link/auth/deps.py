"""Who is calling: an owner (JWT) or an internal service (API key), as FastAPI dependencies.

No or invalid credentials → 401; valid credentials without the right → 403 (CONTRACT section 4).
API keys are recognisable by their `alk_` prefix, so one Bearer header serves both kinds of caller.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from allegro_link.auth.api_keys import ServicePrincipal
from allegro_link.auth.owner import OwnerPrincipal
from allegro_link.errors import Forbidden, Unauthenticated

API_KEY_PREFIX = "alk_"
MAX_CREDENTIAL_LENGTH = 8192
SCOPE_TOKENS_READ = "tokens:read"
SCOPE_ACCOUNTS_READ = "accounts:read"

Principal = OwnerPrincipal | ServicePrincipal

_bearer = HTTPBearer(auto_error=False, description="An owner JWT, or a service API key (alk_…)")


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthenticated("Send an owner JWT or a service API key as a Bearer token.")
    token = credentials.credentials
    if len(token) > MAX_CREDENTIAL_LENGTH:
        raise Unauthenticated("The credentials are not valid.")
    resources = request.state.resources
    if token.startswith(API_KEY_PREFIX):
        principal: ServicePrincipal | None = await resources.api_keys.verify(token)
        if principal is None:
            raise Unauthenticated("The API key is not valid.")
        return principal
    owner: OwnerPrincipal = await resources.owner_tokens.verify(token)
    return owner


# Each role is one dependency that authenticates and then checks the role itself, rather than a
# dependency on a shared "caller" dependency: the token endpoint is on every internal call to
# Allegro, and each dependency level costs FastAPI a resolution step per request.
async def _owner(request: Request, credentials: Credentials) -> OwnerPrincipal:
    caller = await _authenticate(request, credentials)
    if not isinstance(caller, OwnerPrincipal):
        raise Forbidden("This endpoint is for account owners.")
    return caller


async def _account_reader(request: Request, credentials: Credentials) -> Principal:
    caller = await _authenticate(request, credentials)
    if isinstance(caller, ServicePrincipal) and not caller.has_scope(SCOPE_ACCOUNTS_READ):
        raise Forbidden(f"The API key lacks the {SCOPE_ACCOUNTS_READ} scope.")
    return caller


async def _token_reader(request: Request, credentials: Credentials) -> ServicePrincipal:
    caller = await _authenticate(request, credentials)
    if not isinstance(caller, ServicePrincipal):
        raise Forbidden("Owners never read tokens; this endpoint is for internal services.")
    if not caller.has_scope(SCOPE_TOKENS_READ):
        raise Forbidden(f"The API key lacks the {SCOPE_TOKENS_READ} scope.")
    return caller


Owner = Annotated[OwnerPrincipal, Depends(_owner)]
AccountReader = Annotated[Principal, Depends(_account_reader)]
TokenReader = Annotated[ServicePrincipal, Depends(_token_reader)]


def owner_scope(caller: Principal) -> str | None:
    """The owner whose accounts `caller` may see; None means every owner (a service)."""
    return caller.owner_id if isinstance(caller, OwnerPrincipal) else None


def actor(caller: Principal) -> str:
    """How the event log names who did something."""
    return f"owner:{caller.owner_id}" if isinstance(caller, OwnerPrincipal) else f"service:{caller.name}"
