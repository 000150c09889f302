"""Reading events: the feed in commit order (by `seq`) and an account's history (newest first)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from allegro_link.accounts.models import AccountEvent
from allegro_link.accounts.service import InvalidCursor

_FEED_PREFIX = "f1:"
_HISTORY_PREFIX = "h1:"


@dataclass(frozen=True, slots=True)
class FeedFilter:
    types: Sequence[str] = ()
    owner_id: str | None = None
    account_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class FeedPage:
    items: list[AccountEvent]
    next_seq: int


async def read_feed(session: AsyncSession, *, after: int, limit: int, where: FeedFilter) -> FeedPage:
    """Events numbered after `after`, oldest first, and where to go on from."""
    # First the highest number given out: every event numbered up to it has committed (numbers become
    # visible in order, see events/sequencer.py), so a page that reaches it may move the cursor there
    # even when the filters matched nothing.
    top: int = (await session.execute(select(func.coalesce(func.max(AccountEvent.seq), 0)))).scalar_one() or 0
    statement = select(AccountEvent).where(AccountEvent.seq > after, AccountEvent.seq <= top)
    if where.types:
        statement = statement.where(AccountEvent.type.in_(list(where.types)))
    if where.owner_id is not None:
        statement = statement.where(AccountEvent.owner_id == where.owner_id)
    if where.account_id is not None:
        statement = statement.where(AccountEvent.account_id == where.account_id)
    items = list((await session.scalars(statement.order_by(AccountEvent.seq).limit(limit))).all())
    last = items[-1].seq if items else None
    next_seq = last if len(items) == limit and last is not None else max(top, after)
    return FeedPage(items=items, next_seq=next_seq)


async def read_history(
    session: AsyncSession, account_id: uuid.UUID, *, limit: int, before: int | None
) -> tuple[list[AccountEvent], int | None]:
    """The account's events, newest first; and the id to continue below, if there are more."""
    statement = select(AccountEvent).where(AccountEvent.account_id == account_id)
    if before is not None:
        statement = statement.where(AccountEvent.id < before)
    rows = list((await session.scalars(statement.order_by(AccountEvent.id.desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def encode_feed_cursor(seq: int) -> str:
    return _encode(_FEED_PREFIX, seq)


def decode_feed_cursor(cursor: str | None) -> int:
    return 0 if cursor is None else _decode(_FEED_PREFIX, cursor)


def encode_history_cursor(event_pk: int) -> str:
    return _encode(_HISTORY_PREFIX, event_pk)


def decode_history_cursor(cursor: str | None) -> int | None:
    return None if cursor is None else _decode(_HISTORY_PREFIX, cursor)


def _encode(prefix: str, value: int) -> str:
    return base64.urlsafe_b64encode(f"{prefix}{value}".encode()).decode().rstrip("=")


def _decode(prefix: str, cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith(prefix):
            raise ValueError(raw)
        value = int(raw.removeprefix(prefix))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("The cursor is not one this service issued.") from None
    if value < 0:
        raise InvalidCursor("The cursor is not one this service issued.")
    return value
