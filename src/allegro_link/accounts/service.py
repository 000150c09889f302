"""Reading, listing and deleting accounts, always within one owner's scope unless a service reads."""

from __future__ import annotations

import base64
import binascii
import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from allegro_link.accounts import transitions
from allegro_link.accounts.deadline import sql_relogin_soon
from allegro_link.accounts.models import Account, detached_account
from allegro_link.accounts.status import EffectiveStatus, effective_status, sql_needs_relogin
from allegro_link.db import utcnow
from allegro_link.errors import BadRequest, NotFound
from allegro_link.oauth.models import LinkSession


class AccountNotFound(NotFound):
    title = "Account not found"


class InvalidCursor(BadRequest):
    code = "invalid_cursor"
    title = "Invalid cursor"


class ListStatus(enum.StrEnum):
    """The list's status filter: the two statuses, and the active accounts near their deadline."""

    ACTIVE = "active"
    RELOGIN_REQUIRED = "relogin_required"
    RELOGIN_SOON = "relogin_soon"


@dataclass(frozen=True, slots=True)
class AccountFilter:
    owner_id: str | None  # None: every owner (a service with accounts:read and no owner filter)
    soon_window: timedelta
    status: ListStatus | None = None
    login: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[EffectiveStatus]
    next_cursor: str | None
    relogin_required_count: int
    relogin_soon_count: int


SelectT = TypeVar("SelectT", bound=Select[Any])

# A page needs none of the token ciphertexts (about 3 kB a row, TOASTed): they are not selected, and
# reading one from a listed account raises rather than queries. The rows are read as Core rows into
# detached Accounts: an ORM load (identity map, per-row state) was most of the page's database cost.
_CIPHERTEXTS = {Account.access_token_ciphertext.key, Account.refresh_token_ciphertext.key}
_LISTED_COLUMNS = [column for column in Account.__table__.columns if column.key not in _CIPHERTEXTS]


def _scoped(statement: SelectT, owner_id: str | None) -> SelectT:
    return statement if owner_id is None else statement.where(Account.owner_id == owner_id)


async def get_account(
    session: AsyncSession, account_id: uuid.UUID, owner_id: str | None, *, for_update: bool = False
) -> Account:
    """The account, if `owner_id` (None for services) may see it; another owner's reads as missing."""
    statement = _scoped(select(Account).where(Account.id == account_id), owner_id)
    if for_update:
        statement = statement.with_for_update()
    account = (await session.execute(statement)).scalar_one_or_none()
    if account is None:
        raise AccountNotFound("No such account.")
    return account


async def list_accounts(
    session: AsyncSession, account_filter: AccountFilter, *, limit: int, cursor: str | None
) -> Page:
    now = utcnow()
    statement = _scoped(select(*_LISTED_COLUMNS), account_filter.owner_id)
    if account_filter.status is ListStatus.RELOGIN_REQUIRED:
        statement = statement.where(sql_needs_relogin())
    elif account_filter.status is ListStatus.ACTIVE:
        statement = statement.where(~sql_needs_relogin())
    elif account_filter.status is ListStatus.RELOGIN_SOON:
        statement = statement.where(sql_relogin_soon(account_filter.soon_window))
    if account_filter.login is not None:
        statement = statement.where(func.lower(Account.login) == account_filter.login.lower())
    if cursor is not None:
        statement = statement.where(Account.id > _decode_cursor(cursor))
    result = await session.execute(statement.order_by(Account.id).limit(limit + 1))
    rows = [detached_account(row) for row in result.mappings()]
    has_more = len(rows) > limit
    rows = rows[:limit]

    relogin_count = await _count(session, account_filter.owner_id, sql_needs_relogin())
    soon_count = await _count(session, account_filter.owner_id, sql_relogin_soon(account_filter.soon_window))
    return Page(
        items=[effective_status(account, now) for account in rows],
        next_cursor=_encode_cursor(rows[-1].id) if has_more and rows else None,
        relogin_required_count=relogin_count,
        relogin_soon_count=soon_count,
    )


async def _count(session: AsyncSession, owner_id: str | None, condition: ColumnElement[bool]) -> int:
    """Accounts matching `condition` among the owner's (all, for None), whatever the list's filters."""
    statement = _scoped(select(func.count()).select_from(Account).where(condition), owner_id)
    return int((await session.execute(statement)).scalar_one())


async def delete_account(session: AsyncSession, account_id: uuid.UUID, owner_id: str, *, actor: str) -> None:
    """Delete the account and with it its tokens; the event log keeps a record."""
    # Lock order: the account's link sessions, then the account, as /oauth/complete takes them. The
    # delete cascades to those link sessions; locking the account first could deadlock with a re-login
    # being completed at the same moment.
    await session.execute(
        select(LinkSession.id).where(LinkSession.account_id == account_id).with_for_update()
    )
    account = await get_account(session, account_id, owner_id, for_update=True)
    await transitions.deleted(session, account, actor=actor)
    await session.execute(delete(Account).where(Account.id == account.id))


def _encode_cursor(account_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(account_id.bytes).decode().rstrip("=")


def _decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise InvalidCursor("The cursor is not one this service issued.") from None


def status_view(account: Account, now: datetime | None = None) -> EffectiveStatus:
    return effective_status(account, now or utcnow())
