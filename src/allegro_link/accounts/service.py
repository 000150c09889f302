"""Reading, listing and deleting accounts, always within one owner's scope unless a service reads."""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Interval,
    Select,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from allegro_link.accounts import transitions
from allegro_link.accounts.deadline import sql_relogin_soon
from allegro_link.accounts.models import Account
from allegro_link.accounts.schemas import LISTED_COLUMNS
from allegro_link.accounts.status import EffectiveStatus, effective_status, sql_needs_relogin
from allegro_link.db import utcnow
from allegro_link.driver_reads import driver_read
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
    rows: Sequence[tuple[Any, ...]]  # `schemas.LISTED_COLUMNS` of each account first, in id order
    listed_at: datetime  # the moment the items' status is computed at
    next_cursor: str | None
    counts: dict[str, int]  # by the page's field that carries each (`_COUNTED`)


SelectT = TypeVar("SelectT", bound=Select[Any])

# What a page shows of an account (docs/api.md), and nothing else: not the token ciphertexts (about
# 3 kB a row, TOASTed), nor the bookkeeping columns. The rows stay Core rows, made into the response's
# items as plain values (`schemas.listed_account`): an ORM load, an Account and a model per row were
# most of the page's cost.
_LISTED = [Account.__table__.c[key] for key in LISTED_COLUMNS]
_ID = LISTED_COLUMNS.index("id")

# The list statements' parameters: their values change with each request, the statements do not.
_OWNER = bindparam("owner_id", type_=Account.owner_id.type)
_LOGIN = bindparam("login", type_=Account.login.type)
_AFTER = bindparam("after", type_=Account.id.type)
_LIMIT = bindparam("limit", type_=Integer)
_SOON_WINDOW = bindparam("soon_window", type_=Interval)

# What a page counts among all the owner's accounts (every owner's, for a service), whatever its
# filters, by the page's field that carries the count.
_COUNTED: dict[str, ColumnElement[bool]] = {
    "relogin_required_count": sql_needs_relogin(),
    "relogin_soon_count": sql_relogin_soon(_SOON_WINDOW),
}


def _scoped(statement: SelectT, owner_id: str | BindParameter[str] | None) -> SelectT:
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
    engine: AsyncEngine, account_filter: AccountFilter, *, limit: int, cursor: str | None
) -> Page:
    """A page of accounts and its counts, read in one statement on the driver (`driver_reads`).

    A read needs no transaction. The counts ride on every row of the page: PostgreSQL computes an
    uncorrelated subquery once per statement (an InitPlan), so the page and its counts cost one round
    trip and see one snapshot. An empty page has no row to carry them; then they are read on their own.
    """
    now = utcnow()
    parameters = {
        "owner_id": account_filter.owner_id,
        "login": account_filter.login.lower() if account_filter.login is not None else None,
        "after": _decode_cursor(cursor) if cursor is not None else None,
        "limit": limit + 1,
        "soon_window": account_filter.soon_window,
    }
    scoped = account_filter.owner_id is not None
    shape = _PageShape(scoped, account_filter.status, account_filter.login is not None, cursor is not None)
    rows = await driver_read(engine, _page_statement(shape)).all(**parameters)
    if rows:
        counted = rows[0][len(LISTED_COLUMNS) :]
    else:
        counted = (await driver_read(engine, _counts_statement(scoped)).all(**parameters))[0]
    return Page(
        rows=rows[:limit],
        listed_at=now,
        next_cursor=_encode_cursor(rows[limit - 1][_ID]) if len(rows) > limit else None,
        counts={name: int(count) for name, count in zip(_COUNTED, counted, strict=True)},
    )


@dataclass(frozen=True, slots=True)
class _PageShape:
    """Which filters a list request uses. Each combination is one statement, built once."""

    scoped: bool  # one owner's accounts (the `owner_id` parameter); else every owner's
    status: ListStatus | None
    by_login: bool
    after: bool  # a cursor: the accounts after the `after` id


@functools.cache
def _page_statement(shape: _PageShape) -> Select[Any]:
    """The page for `shape`, every value a parameter, with the counts as columns.

    Built once per shape: SQLAlchemy memoises a statement's cache key, so reusing the statement skips
    building its expressions and keying the compiled-statement cache on every request.
    """
    statement = _scoped(select(*_LISTED, *_counts(shape.scoped)), _OWNER if shape.scoped else None)
    if shape.status is ListStatus.RELOGIN_REQUIRED:
        statement = statement.where(sql_needs_relogin())
    elif shape.status is ListStatus.ACTIVE:
        statement = statement.where(~sql_needs_relogin())
    elif shape.status is ListStatus.RELOGIN_SOON:
        statement = statement.where(sql_relogin_soon(_SOON_WINDOW))
    if shape.by_login:
        statement = statement.where(func.lower(Account.login) == _LOGIN)
    if shape.after:
        statement = statement.where(Account.id > _AFTER)
    return statement.order_by(Account.id).limit(_LIMIT)


@functools.cache
def _counts_statement(scoped: bool) -> Select[Any]:
    return select(*_counts(scoped))


def _counts(scoped: bool) -> list[ColumnElement[Any]]:
    """The counts as labelled scalar subqueries: among the owner's accounts, or every owner's.

    A subquery each rather than one scan with FILTER: over every owner's accounts (a service's list)
    each one reads only its partial indexes, not the whole table. `correlate(None)`: each counts the
    table, not the page's row it rides on.
    """
    owner = _OWNER if scoped else None
    return [
        _scoped(select(func.count()).select_from(Account).where(condition), owner)
        .correlate(None)
        .scalar_subquery()
        .label(name)
        for name, condition in _COUNTED.items()
    ]


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
