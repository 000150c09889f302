"""Watching the statements an engine sends to PostgreSQL: count them, or act just before one is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class QueryCounter:
    """Counts the statements that `match` picks; `before_next` runs an action just before the next one is
    sent (raising there fails that statement, which is then not counted)."""

    def __init__(self, engine: AsyncEngine, match: Callable[[str], bool]) -> None:
        self.count = 0
        self._engine = engine
        self._match = match
        self._actions: list[Callable[[], None]] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def before_next(self, action: Callable[[], None]) -> None:
        self._actions.append(action)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not self._match(statement):
            return
        if self._actions:
            self._actions.pop(0)()
        self.count += 1

    def close(self) -> None:
        event.remove(self._engine.sync_engine, "before_cursor_execute", self._seen)


@contextmanager
def counting(engine: AsyncEngine, match: Callable[[str], bool]) -> Iterator[QueryCounter]:
    counter = QueryCounter(engine, match)
    try:
        yield counter
    finally:
        counter.close()
