"""GET /events (the feed, for services) and GET /accounts/{id}/events (an account's history)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import exists, select

from allegro_link.accounts.models import AccountEvent
from allegro_link.accounts.service import AccountNotFound, InvalidCursor, get_account
from allegro_link.auth.deps import AUTH_ERRORS, AccountReader, EventReader, owner_scope
from allegro_link.db import DbSession
from allegro_link.errors import error_responses
from allegro_link.events.feed import (
    FeedFilter,
    decode_feed_cursor,
    decode_history_cursor,
    encode_feed_cursor,
    encode_history_cursor,
    read_feed,
    read_history,
)
from allegro_link.events.schemas import EventFeedPage, EventHistoryPage, EventOut, EventTypeWord
from allegro_link.events.signals import Signal
from allegro_link.resources import ResourcesDep

router = APIRouter()

MAX_WAIT_SECONDS = 30


@router.get(
    "/events",
    tags=["events"],
    operation_id="events-feed",
    response_model=EventFeedPage,
    responses=error_responses(*AUTH_ERRORS, InvalidCursor),
)
async def feed(
    resources: ResourcesDep,
    caller: EventReader,
    after: Annotated[str | None, Query(max_length=64, description="a `next_cursor` from before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    type: Annotated[list[EventTypeWord] | None, Query(description="only these types (repeatable)")] = None,
    owner_id: Annotated[str | None, Query(max_length=200)] = None,
    account_id: uuid.UUID | None = None,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait for an event when none is due")
    ] = 0,
) -> EventFeedPage:
    """Every account event in commit order; follow `next_cursor` to see each exactly once."""
    seq = decode_feed_cursor(after)
    where = FeedFilter(types=tuple(type or ()), owner_id=owner_id, account_id=account_id)
    sessionmaker = resources.sessionmaker
    signals = resources.signals
    # Between looks, wait for this process's NOTIFY, but never longer than the poll interval: a
    # notification can be lost (the LISTEN connection reconnecting) or never come at all (behind
    # PgBouncer in transaction mode, LISTEN hears nothing). Each look is one indexed query.
    poll_seconds = resources.settings.events_poll_seconds
    deadline = time.monotonic() + wait
    while True:
        mark = signals.sequenced.mark()
        # A session per look: a long-polling request holds no pooled connection while it waits.
        async with sessionmaker() as session:
            page = await read_feed(session, after=seq, limit=limit, where=where)
        seq = page.next_seq
        remaining = deadline - time.monotonic()
        if page.items or remaining <= 0:
            return EventFeedPage(
                items=[EventOut.build(event) for event in page.items], next_cursor=encode_feed_cursor(seq)
            )
        await Signal.wait(mark, min(remaining, poll_seconds))


@router.get(
    "/accounts/{account_id}/events",
    tags=["accounts"],
    operation_id="accounts-events",
    response_model=EventHistoryPage,
    responses=error_responses(*AUTH_ERRORS, AccountNotFound, InvalidCursor),
)
async def history(
    session: DbSession,
    caller: AccountReader,
    account_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> EventHistoryPage:
    """The account's history, newest first: why it logged out, when it was linked again."""
    before = decode_history_cursor(cursor)
    scope = owner_scope(caller)
    if scope is not None:
        await get_account(session, account_id, scope)
    elif not (await session.execute(select(exists().where(AccountEvent.account_id == account_id)))).scalar():
        # A service may read the history of a deleted account (the log outlives it), not of none.
        raise AccountNotFound("No such account.")
    rows, next_pk = await read_history(session, account_id, limit=limit, before=before)
    return EventHistoryPage(
        items=[EventOut.build(event) for event in rows],
        next_cursor=encode_history_cursor(next_pk) if next_pk is not None else None,
    )
