"""Watching the statements an engine sends to PostgreSQL: count them, or act just before one is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from allegro_link.driver_reads import DriverRead


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


@contextmanager
def driver_statements() -> Iterator[list[str]]:
    """The SQL of every read made on the driver (`DriverRead`) in this process meanwhile, which engine
    events do not see; services under test served in a thread included."""
    seen: list[str] = []
    run = DriverRead._run

    async def recording(self: DriverRead, args: list[Any], *, many: bool) -> Any:
        seen.append(self.sql)
        return await run(self, args, many=many)

    DriverRead._run = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        DriverRead._run = run  # type: ignore[method-assign]
