"""One-statement reads on the pool's own asyncpg connections, for the hottest paths.

SQLAlchemy's execution layer costs a read about twice the driver's own time (docs/performance.md):
a `Connection` and its events, the isolation-level switch for autocommit, the compiled statement's
per-execution setup, the cursor adaption and the result's row objects, each crossing into a greenlet.
A `DriverRead` keeps what matters of it and drops the rest:

- the statement is a Core SELECT, compiled once by the engine's dialect (its SQL and its result
  columns' type processors, so that values come back as SQLAlchemy would return them: enums as enums);
- the connection is checked out of the engine's own pool, with its checkout events (the dead-connection
  check in db.py), and returned to it; a failure to connect is wrapped as the engine wraps it;
- a failure that means the database is unreachable invalidates the connection (the pool will not hand it
  out again) and becomes `DatabaseUnavailable` (503), as the error handlers answer for the ORM's reads;
- behind PgBouncer in transaction mode the statement runs in a transaction, as every other statement
  does there (db.py, `_no_autocommit`).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import asyncpg
import structlog
from sqlalchemy import Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from allegro_link.db import behind_pgbouncer, is_unavailable
from allegro_link.errors import DatabaseUnavailable

log = structlog.get_logger(__name__)


class DriverRead:
    """A Core SELECT, run on a pooled asyncpg connection of `engine`."""

    def __init__(self, engine: AsyncEngine, statement: Select[Any]) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        # Bound parameters in the order of the SQL's $1, $2, ..., each with its type's conversion.
        self._params = tuple(
            (name, bind, bind.type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup or ()
            for bind in (compiled.binds[name],)
        )
        self._keys = tuple(str(column.key) for column in statement.selected_columns)
        # The columns whose values SQLAlchemy converts (enums, say), by position; the rest pass as is.
        processors = (
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        )
        self._processed = tuple((i, p) for i, p in enumerate(processors) if p is not None)
        self._dialect = dialect
        self._pool = engine.sync_engine.pool
        self._gate = _gate(engine)
        self._in_transaction = behind_pgbouncer(engine)

    async def one_or_none(self, **params: Any) -> dict[str, Any] | None:
        """The row as {column key: value}, or None when there is none."""
        record = await self._run(self._arguments(params), many=False)
        return None if record is None else dict(zip(self._keys, self._values(record), strict=True))

    async def all(self, **params: Any) -> list[tuple[Any, ...]]:
        """Every row, as a tuple of the selected columns' values."""
        records = await self._run(self._arguments(params), many=True)
        return [self._values(record) for record in records]

    def _values(self, record: asyncpg.Record) -> tuple[Any, ...]:
        if not self._processed:
            return tuple(record)
        values = list(record)
        for i, process in self._processed:
            if values[i] is not None:
                values[i] = process(values[i])
        return tuple(values)

    def _arguments(self, given: dict[str, Any]) -> list[Any]:
        arguments = []
        for name, bind, process in self._params:
            # A parameter the statement needs and was not given fails here (KeyError), not in the driver.
            value = given[name] if name in given or bind.required else bind.effective_value
            arguments.append(value if process is None or value is None else process(value))
        return arguments

    async def _run(self, args: list[Any], *, many: bool) -> Any:
        async with self._gate:
            return await self._run_on_a_connection(args, many=many)

    async def _run_on_a_connection(self, args: list[Any], *, many: bool) -> Any:
        pooled = await self._checkout()
        driver: asyncpg.Connection = pooled.driver_connection
        fetch = driver.fetch if many else driver.fetchrow
        try:
            if self._in_transaction:
                async with driver.transaction():
                    return await fetch(self.sql, *args)
            return await fetch(self.sql, *args)
        except BaseException as exc:
            # Not knowing what state a failed or cancelled connection is in, it is not reused.
            if not isinstance(exc, asyncpg.PostgresError) or driver.is_closed():
                await greenlet_spawn(pooled.invalidate, exc if isinstance(exc, Exception) else None)
            if isinstance(exc, Exception) and is_unavailable(exc):
                log.warning("db.unavailable", error=type(exc).__name__)
                raise DatabaseUnavailable() from exc
            raise
        finally:
            await greenlet_spawn(pooled.close)

    async def _checkout(self) -> PoolProxiedConnection:
        """A connection of the pool, whose failure to connect reads as it does through the engine.

        The pool's checkout may connect, which SQLAlchemy runs in a greenlet (so do the return and the
        invalidation, which may close a connection). The engine wraps a failed connect in DBAPIError,
        which the error handlers read (a refused login, a missing database, an outage: 503); so here.
        """
        dbapi_error = self._dialect.loaded_dbapi.Error
        try:
            return await greenlet_spawn(self._pool.connect)
        except dbapi_error as exc:
            raise DBAPIError.instance(
                None,
                None,
                exc,
                dbapi_error,
                connection_invalidated=self._dialect.is_disconnect(exc, None, None),
                dialect=self._dialect,
            ) from exc


# Driver reads queue first come first served here, sized to the pool, rather than in the pool: its
# queue is not fair, and under a burst (64 clients listing at once) some reads waited many turns, up to
# its timeout (docs/performance.md). The token path's own gate (tokens/reads.py) sits in front of this.
_GATES: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _gate(engine: AsyncEngine) -> asyncio.Semaphore:
    gate = _GATES.get(engine)
    if gate is None:
        gate = _GATES[engine] = asyncio.Semaphore(_pool_size(engine))
    return gate


def _pool_size(engine: AsyncEngine) -> int:
    size = getattr(engine.sync_engine.pool, "size", None)
    return max(1, size()) if callable(size) else 1


_READS: weakref.WeakKeyDictionary[AsyncEngine, dict[Select[Any], DriverRead]] = weakref.WeakKeyDictionary()


def driver_read(engine: AsyncEngine, statement: Select[Any]) -> DriverRead:
    """The `DriverRead` of `statement` on `engine`, compiled once (for statements built once, too)."""
    reads = _READS.setdefault(engine, {})
    read = reads.get(statement)
    if read is None:
        read = reads[statement] = DriverRead(engine, statement)
    return read
