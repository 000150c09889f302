"""Token endpoints for internal services (scope `tokens:read`)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response

from allegro_link.accounts.service import AccountNotFound
from allegro_link.auth.api_keys import ServicePrincipal
from allegro_link.auth.deps import AUTH_ERRORS, TokenReader
from allegro_link.errors import DatabaseUnavailable, error_responses
from allegro_link.resources import Resources, resources
from allegro_link.tokens.problems import AllegroUnavailableProblem, ReloginRequired
from allegro_link.tokens.reads import IssuedToken
from allegro_link.tokens.schemas import RefreshRequest, TokenOut

router = APIRouter(prefix="/accounts", tags=["tokens"])

MIN_VALID_FOR_DEFAULT = 300
MIN_VALID_FOR_MAX = 3600
MinValidFor = Annotated[
    int,
    Query(
        ge=0,
        le=MIN_VALID_FOR_MAX,
        description=f"seconds the token must stay valid for (default {MIN_VALID_FOR_DEFAULT})",
    ),
]
ERRORS = error_responses(
    *AUTH_ERRORS,
    AccountNotFound,
    ReloginRequired,
    AllegroUnavailableProblem,
    DatabaseUnavailable,
)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# Resources are taken with `resources(request)` in the route rather than through dependencies: this
# is the hot path, and each dependency costs FastAPI a resolution step on every request.
def _answer(issued: IssuedToken, caller: ServicePrincipal, request: Request) -> Response:
    body = token_body(resources(request), issued, caller)
    return Response(body, media_type="application/json", headers=NO_STORE)


def token_body(app: Resources, issued: IssuedToken, caller: ServicePrincipal) -> bytes:
    """The response body for a token handed to `caller`, which is recorded in the audit log."""
    app.token_audit.record(
        account_id=issued.account_id,
        api_key_id=caller.key_id,
        api_key_name=caller.name,
        token_version=issued.token_version,
        refreshed=issued.refreshed,
    )
    # The fields are typed already (IssuedToken), so the model is built without validating them again.
    body = TokenOut.model_construct(
        account_id=issued.account_id,
        allegro_user_id=issued.allegro_user_id,
        login=issued.login,
        access_token=issued.access_token,
        expires_at=issued.expires_at,
        scope=issued.scope,
    )
    # Serialised here, once; `response_model` still documents the body in OpenAPI.
    return body.model_dump_json().encode()


@router.get("/{account_id}/token", operation_id="tokens-get", response_model=TokenOut, responses=ERRORS)
async def get_token(
    account_id: uuid.UUID,
    caller: TokenReader,
    request: Request,
    min_valid_for: MinValidFor = MIN_VALID_FOR_DEFAULT,
) -> Response:
    """A currently valid access token for the account, refreshed first when needed."""
    issued = await resources(request).tokens.token(account_id, min_valid_for=timedelta(seconds=min_valid_for))
    return _answer(issued, caller, request)


@router.post(
    "/{account_id}/token/refresh", operation_id="tokens-refresh", response_model=TokenOut, responses=ERRORS
)
async def refresh_token(
    account_id: uuid.UUID,
    caller: TokenReader,
    request: Request,
    body: Annotated[RefreshRequest | None, Body()] = None,
    min_valid_for: MinValidFor = MIN_VALID_FOR_DEFAULT,
) -> Response:
    """Allegro refused the caller's token (send it as `rejected_token`), or refresh now (no body)."""
    issued = await resources(request).tokens.refresh(
        account_id,
        min_valid_for=timedelta(seconds=min_valid_for),
        rejected_token=body.rejected_token if body else None,
    )
    return _answer(issued, caller, request)
