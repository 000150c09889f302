"""Token endpoints for internal services (scope `tokens:read`)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from allegro_link.accounts.service import AccountNotFound
from allegro_link.auth.api_keys import ServicePrincipal
from allegro_link.auth.deps import TokenReader
from allegro_link.errors import DatabaseUnavailable, Forbidden, Unauthenticated, error_responses
from allegro_link.tokens.audit import TokenAuditLog
from allegro_link.tokens.broker import AllegroUnavailableProblem, IssuedToken, ReloginRequired, TokenBroker
from allegro_link.tokens.schemas import RefreshRequest, TokenOut

router = APIRouter(prefix="/accounts", tags=["tokens"])

MinValidFor = Annotated[
    int, Query(ge=0, le=3600, description="seconds the token must stay valid for (default 300)")
]
ERRORS = error_responses(
    Unauthenticated,
    Forbidden,
    AccountNotFound,
    ReloginRequired,
    AllegroUnavailableProblem,
    DatabaseUnavailable,
)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _broker(request: Request) -> TokenBroker:
    broker: TokenBroker = request.state.resources.tokens
    return broker


def _audit(request: Request) -> TokenAuditLog:
    audit: TokenAuditLog = request.state.resources.token_audit
    return audit


Broker = Annotated[TokenBroker, Depends(_broker)]
Audit = Annotated[TokenAuditLog, Depends(_audit)]


def _answer(issued: IssuedToken, caller: ServicePrincipal, audit: Audit, response: Response) -> TokenOut:
    audit.record(
        account_id=issued.account_id,
        api_key_id=caller.key_id,
        api_key_name=caller.name,
        token_version=issued.token_version,
        refreshed=issued.refreshed,
    )
    response.headers.update(NO_STORE)
    return TokenOut(
        account_id=issued.account_id,
        allegro_user_id=issued.allegro_user_id,
        login=issued.login,
        access_token=issued.access_token,
        expires_at=issued.expires_at,
        scope=issued.scope,
    )


@router.get("/{account_id}/token", operation_id="tokens-get", response_model=TokenOut, responses=ERRORS)
async def get_token(
    account_id: uuid.UUID,
    caller: TokenReader,
    broker: Broker,
    audit: Audit,
    response: Response,
    min_valid_for: MinValidFor = 300,
) -> TokenOut:
    """A currently valid access token for the account, refreshed first when needed."""
    issued = await broker.token(account_id, min_valid_for=timedelta(seconds=min_valid_for))
    return _answer(issued, caller, audit, response)


@router.post(
    "/{account_id}/token/refresh", operation_id="tokens-refresh", response_model=TokenOut, responses=ERRORS
)
async def refresh_token(
    account_id: uuid.UUID,
    caller: TokenReader,
    broker: Broker,
    audit: Audit,
    response: Response,
    body: Annotated[RefreshRequest | None, Body()] = None,
    min_valid_for: MinValidFor = 300,
) -> TokenOut:
    """Allegro refused the caller's token (send it as `rejected_token`), or refresh now (no body)."""
    issued = await broker.refresh(
        account_id,
        min_valid_for=timedelta(seconds=min_valid_for),
        rejected_token=body.rejected_token if body else None,
    )
    return _answer(issued, caller, audit, response)
