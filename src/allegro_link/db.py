"""SQLAlchemy plumbing: declarative base, engine factory, the per-request unit of work, SQLSTATEs."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import MetaData, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from allegro_link.resources import resources
from allegro_link.settings import DatabaseSettings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


# PostgreSQL SQLSTATEs the code acts on (see `sqlstate`).
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind `exc`, wherever it sits in the chain; None when there is none.

    SQLAlchemy keeps the driver's exception in `.orig` (its asyncpg adapter copies the code as `sqlstate`
    and `pgcode`); asyncpg's own exception sits in the cause chain.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for attribute in ("sqlstate", "pgcode"):
            state = getattr(current, attribute, None)
            if isinstance(state, str):
                return state
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return None


def is_lock_timeout(exc: BaseException) -> bool:
    """True when `exc` is a lock wait that ran out of `lock_timeout` (SQLSTATE 55P03)."""
    return sqlstate(exc) == LOCK_NOT_AVAILABLE


# SQLSTATE classes that mean "the database is not available", whatever the statement: 08 connection
# exceptions (e.g. 08003 when the server drops a connection it is still setting up, during a restart),
# 53 insufficient resources (too many connections), 57 operator intervention (statement_timeout 57014,
# shutdown 57P01..57P03).
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


def has_unavailable_sqlstate(exc: BaseException) -> bool:
    state = sqlstate(exc)
    return state is not None and state.startswith(UNAVAILABLE_SQLSTATE_CLASSES)


def is_unavailable(exc: BaseException) -> bool:
    """True when the driver's `exc` means the database is unreachable, not that the statement is wrong.

    For asyncpg's own exceptions (reads made on the driver, `driver_reads`); the error handlers judge
    SQLAlchemy's (`errors.is_connection_error`).
    """
    return isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError)) or has_unavailable_sqlstate(exc)


def uuid7() -> uuid.UUID:
    """Time-ordered UUID (RFC 9562 v7): ids sort by creation, which keeps cursor pages stable."""
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & (2**48 - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & (2**62 - 1)
    return uuid.UUID(int=value)


def create_engine(settings: DatabaseSettings, **overrides: Any) -> AsyncEngine:
    statement_timeout_ms = int(settings.db_statement_timeout_seconds * 1000)
    connect_args: dict[str, Any] = {
        "timeout": settings.db_connect_timeout_seconds,
        # Client-side bound on every statement; it also holds behind PgBouncer, where the server-side
        # timeouts below cannot be sent.
        "command_timeout": settings.db_statement_timeout_seconds + 2,
        "server_settings": {"application_name": "allegro-link"},
    }
    if settings.db_pgbouncer:
        connect_args.update(pgbouncer_connect_args())
    else:
        # Startup parameters last for the whole server session. PgBouncer refuses them (it tracks only a
        # few, application_name among them) and, in transaction mode, would hand the session to other
        # clients anyway: there the role's defaults (ALTER ROLE ... SET, docs/deploy.md) take their place.
        connect_args["server_settings"].update(
            {
                "statement_timeout": str(statement_timeout_ms),
                "lock_timeout": str(statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(statement_timeout_ms * 6),
            }
        )
    options: dict[str, Any] = {
        # Not pre-ping: on asyncpg it is three round trips (BEGIN, a query, ROLLBACK) on every checkout,
        # and _discard_closed_connections below does its job for free (docs/performance.md).
        "pool_pre_ping": False,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_connect_timeout_seconds,
        "connect_args": connect_args,
    }
    options.update(overrides)
    engine = create_async_engine(settings.database_url.get_secret_value(), **options)
    event.listen(engine.sync_engine, "checkout", _discard_closed_connections)
    if settings.db_pgbouncer:
        event.listen(engine.sync_engine, "set_engine_execution_options", _no_autocommit)
        event.listen(engine.sync_engine, "set_connection_execution_options", _no_autocommit)
    return engine


def behind_pgbouncer(engine: AsyncEngine) -> bool:
    """True when `engine` was made for PgBouncer in transaction mode (see `create_engine`)."""
    return event.contains(engine.sync_engine, "set_engine_execution_options", _no_autocommit)


def _no_autocommit(target: Any, options: dict[str, Any]) -> None:
    """Behind PgBouncer, statements run in a transaction even where the code asks for autocommit.

    asyncpg prepares a statement in one round trip and executes it in the next. Outside a transaction
    PgBouncer may hand each round trip to another server connection, where the statement does not exist.
    SQLAlchemy takes the options as this hook leaves them (the dictionary may be changed in place), so the
    fast autocommit reads (the token path's) become BEGIN, SELECT, ROLLBACK: two more round trips, only here.
    """
    if options.get("isolation_level") == "AUTOCOMMIT":
        del options["isolation_level"]


def pgbouncer_connect_args() -> dict[str, Any]:
    """asyncpg options for PgBouncer in transaction pooling mode.

    Each transaction may run on another server connection, so a prepared statement must never be reused
    outside the transaction that prepared it (no caches), and its name must be unique: a name another
    client's transaction left behind on that server connection would otherwise collide.
    """
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def _discard_closed_connections(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection the server has closed (a restart, a terminated backend) is replaced.

    asyncpg reads every idle socket, so a connection the server closed is marked closed as soon as the
    event loop sees the end of the stream; no round trip is needed to find out. Raising
    DisconnectionError makes the pool drop it and check out another (or a new) one. A connection that
    dies silently (a network partition) fails its query instead, which SQLAlchemy also recognises as a
    disconnect: it invalidates the pool, and the request gets a 503.
    """
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def _unit_of_work(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit when the route returns, roll back when it raises."""
    async with resources(request).sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": the commit runs when the route function returns, before the response is sent, so
# a failed commit becomes an error response rather than a success that was never stored.
DbSession = Annotated[AsyncSession, Depends(_unit_of_work, scope="function")]
