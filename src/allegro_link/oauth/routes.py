"""Link flow routes: start (authorize), Allegro's browser callback, and completion by the owner."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from allegro_link.accounts.schemas import AccountOut, SoonWindow
from allegro_link.accounts.service import AccountNotFound, status_view
from allegro_link.auth.deps import AUTH_ERRORS, Owner, actor
from allegro_link.db import DbSession
from allegro_link.errors import PROBLEM_CONTENT_TYPE, error_responses
from allegro_link.oauth.flow import (
    CallbackParams,
    InvalidState,
    LinkFlow,
    LinkSessionNotFound,
    TooManyLinkStarts,
)
from allegro_link.oauth.return_to import InvalidReturnTo
from allegro_link.oauth.schemas import (
    AccountMismatchProblem,
    AuthorizeRequest,
    AuthorizeResponse,
    CompleteRequest,
    CompleteResponse,
)
from allegro_link.resources import resources

router = APIRouter(tags=["oauth"])

# The callback URL carries a one-time code and state: keep it out of caches and Referer headers.
CALLBACK_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _flow(request: Request) -> LinkFlow:
    return resources(request).link_flow


Flow = Annotated[LinkFlow, Depends(_flow)]


@router.post(
    "/accounts/authorize",
    operation_id="oauth-start-link",
    status_code=201,
    response_model=AuthorizeResponse,
    responses=error_responses(*AUTH_ERRORS, InvalidReturnTo, TooManyLinkStarts),
)
async def start_link(
    body: AuthorizeRequest, owner: Owner, session: DbSession, flow: Flow
) -> AuthorizeResponse:
    """Start linking a new Allegro account ("Połącz konto Allegro")."""
    started = await flow.start_link(session, owner_id=owner.owner_id, return_to=body.return_to)
    return AuthorizeResponse.build(started)


@router.post(
    "/accounts/{account_id}/authorize",
    operation_id="oauth-start-relogin",
    status_code=201,
    response_model=AuthorizeResponse,
    responses=error_responses(*AUTH_ERRORS, AccountNotFound, InvalidReturnTo, TooManyLinkStarts),
)
async def start_relogin(
    account_id: uuid.UUID, body: AuthorizeRequest, owner: Owner, session: DbSession, flow: Flow
) -> AuthorizeResponse:
    """Log an existing account in again (the key button next to an account that needs it)."""
    started = await flow.start_link(
        session, owner_id=owner.owner_id, return_to=body.return_to, account_id=account_id
    )
    return AuthorizeResponse.build(started)


@router.get(
    "/oauth/callback",
    operation_id="oauth-callback",
    status_code=303,
    response_class=RedirectResponse,
    responses={
        303: {"description": "back to return_to with allegro_link=complete|error and details"},
        **error_responses(InvalidState),
    },
)
async def callback(request: Request, flow: Flow) -> RedirectResponse:
    """Allegro sends the user's browser here (the registered redirect URI)."""
    try:
        params = _callback_params(request.url.query)
        target = await flow.handle_callback(params)
    except InvalidState as exc:
        exc.headers.update(CALLBACK_HEADERS)
        raise
    return RedirectResponse(target, status_code=303, headers=CALLBACK_HEADERS)


def _callback_params(query: str) -> CallbackParams:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except ValueError:
        raise InvalidState("The callback query is malformed.") from None
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    for name in ("state", "code", "error"):
        if len(values.get(name, [])) > 1:
            raise InvalidState(f"The callback carries {name} more than once.")
    state = values.get("state", [None])[0]
    if not state:
        raise InvalidState("The callback carries no state.")
    code = values.get("code", [None])[0] or None
    error = values.get("error", [None])[0] or None
    if code is not None and len(code) > 2048:
        raise InvalidState("The code is malformed.")
    return CallbackParams(state=state, code=code, error=error[:64] if error else None)


@router.post(
    "/oauth/complete",
    operation_id="oauth-complete",
    response_model=CompleteResponse,
    responses={
        **error_responses(*AUTH_ERRORS, LinkSessionNotFound),
        409: {
            "model": AccountMismatchProblem,
            "description": "re-login done as a different Allegro user; nothing changed",
            "content": {PROBLEM_CONTENT_TYPE: {}},
        },
    },
)
async def complete(body: CompleteRequest, owner: Owner, flow: Flow, window: SoonWindow) -> CompleteResponse:
    """Bind the Allegro account from a finished callback to the owner who started the flow."""
    completed = await flow.complete_link(
        owner_id=owner.owner_id, link_session=body.link_session, actor=actor(owner)
    )
    return CompleteResponse(
        result=completed.result,
        account=AccountOut.build(status_view(completed.account), soon_window=window),
    )
