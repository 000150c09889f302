"""GET/DELETE /accounts: thin routes over accounts.service."""

from __future__ import annotations

import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from allegro_link.accounts.schemas import AccountOut, AccountPage, SoonWindow, listed_account
from allegro_link.accounts.service import (
    AccountFilter,
    AccountNotFound,
    InvalidCursor,
    ListStatus,
    delete_account,
    get_account,
    list_accounts,
    status_view,
)
from allegro_link.auth.deps import AUTH_ERRORS, AccountReader, Owner, actor, owner_scope
from allegro_link.db import DbSession
from allegro_link.errors import Forbidden, error_responses
from allegro_link.resources import resources

router = APIRouter(prefix="/accounts", tags=["accounts"])


@router.get(
    "",
    operation_id="accounts-list",
    response_model=AccountPage,
    responses=error_responses(*AUTH_ERRORS, InvalidCursor),
)
async def list_(
    request: Request,
    caller: AccountReader,
    window: SoonWindow,
    status: Annotated[
        ListStatus | None,
        Query(description="only accounts in this status; `relogin_soon`: active ones near their deadline"),
    ] = None,
    login: Annotated[str | None, Query(max_length=200, description="exact login, ignoring case")] = None,
    owner_id: Annotated[
        str | None, Query(max_length=200, description="services only: one owner's accounts")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """List accounts: an owner sees its own; a service with `accounts:read` sees all (or `owner_id=`)."""
    scope = owner_scope(caller)
    if scope is None:
        scope = owner_id
    elif owner_id not in (None, scope):
        raise Forbidden("Owners list only their own accounts.")
    # A read: one statement on the pool's driver connection rather than the request's unit of work,
    # whose BEGIN and COMMIT would be two of its three round trips.
    page = await list_accounts(
        resources(request).engine,
        AccountFilter(owner_id=scope, soon_window=window, status=status, login=login),
        limit=limit,
        cursor=cursor,
    )
    body = {
        "items": [listed_account(row, page.listed_at, window) for row in page.rows],
        "next_cursor": page.next_cursor,
        **page.counts,
    }
    # The page as AccountPage writes it (`…Z` timestamps), serialised once from plain values;
    # `response_model` still documents it in OpenAPI.
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


@router.get(
    "/{account_id}",
    operation_id="accounts-get",
    response_model=AccountOut,
    responses=error_responses(*AUTH_ERRORS, AccountNotFound),
)
async def get(
    session: DbSession, caller: AccountReader, window: SoonWindow, account_id: uuid.UUID
) -> AccountOut:
    """One account, with its status as of now."""
    account = await get_account(session, account_id, owner_scope(caller))
    return AccountOut.build(status_view(account), soon_window=window)


@router.delete(
    "/{account_id}",
    operation_id="accounts-delete",
    status_code=204,
    response_class=Response,
    responses=error_responses(*AUTH_ERRORS, AccountNotFound),
)
async def delete(session: DbSession, owner: Owner, account_id: uuid.UUID) -> Response:
    """Disconnect an account: its tokens are destroyed and later reads answer 404."""
    await delete_account(session, account_id, owner.owner_id, actor=actor(owner))
    return Response(status_code=204)
