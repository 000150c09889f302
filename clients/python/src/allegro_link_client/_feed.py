"""Following the event feed (`GET /events`): pages, cursors, where to resume.

`cursor` is what a consumer stores to resume without losing an event: it moves to a page's
`next_cursor` only as that page's last event is handed out, so a consumer that saves `feed.cursor`
after handling each event never skips one (after a crash it may see the rest of a page again).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from allegro_link_client._calls import Call, Endpoints
from allegro_link_client._models import Event, EventPage

MAX_WAIT = 30.0


@dataclass(frozen=True, slots=True)
class FeedQuery:
    wait: float
    limit: int
    types: Sequence[str]
    owner_id: str | None
    account_id: uuid.UUID | None
    stop_when_idle: bool

    def __post_init__(self) -> None:
        if not 0 <= self.wait <= MAX_WAIT:
            raise ValueError(f"wait must be 0 to {MAX_WAIT:g} seconds")
        if not 1 <= self.limit <= 500:
            raise ValueError("limit must be 1 to 500")
        if self.wait == 0 and not self.stop_when_idle:
            # Following the feed with wait=0 would ask again at once after every empty page.
            raise ValueError("following the feed needs wait > 0 (or stop_when_idle=True)")


class FeedState:
    def __init__(self, endpoints: Endpoints, after: str | None, query: FeedQuery) -> None:
        self._endpoints = endpoints
        self._query = query
        self._next_page_after = after
        self._pending: deque[Event] = deque()
        self._idle = False
        self.cursor = after

    def has_event(self) -> bool:
        return bool(self._pending)

    def finished(self) -> bool:
        return self._idle and self._query.stop_when_idle

    def next_page(self) -> Call[EventPage]:
        query = self._query
        return self._endpoints.events_page(
            after=self._next_page_after,
            wait=query.wait,
            limit=query.limit,
            types=query.types,
            owner_id=query.owner_id,
            account_id=query.account_id,
        )

    def accept(self, page: EventPage) -> None:
        self._pending.extend(page.items)
        self._next_page_after = page.next_cursor
        self._idle = not page.items
        if not page.items:
            self.cursor = page.next_cursor

    def take(self) -> Event:
        event = self._pending.popleft()
        if not self._pending:
            self.cursor = self._next_page_after
        return event
