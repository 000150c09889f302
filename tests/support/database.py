"""The PostgreSQL the tests run on: the server at ALLEGRO_LINK_TEST_DATABASE_URL, else an embedded one."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from allegro_link.embedded_pg import EmbeddedPostgres, create_database, drop_database
from allegro_link.migrations_path import alembic_config
from allegro_link.models import Base

TEST_DATABASE_URL_VARIABLE = "ALLEGRO_LINK_TEST_DATABASE_URL"


@dataclass
class PgServer:
    """A PostgreSQL server: `url(db)` gives a SQLAlchemy URL for one of its databases."""

    server_url: str
    embedded: EmbeddedPostgres | None = None

    def url(self, database: str) -> str:
        return make_url(self.server_url).set(database=database).render_as_string(hide_password=False)


async def start_server() -> AsyncIterator[PgServer]:
    external = os.environ.get(TEST_DATABASE_URL_VARIABLE)
    if external:
        url = make_url(external)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+asyncpg")
        yield PgServer(url.render_as_string(hide_password=False))
        return
    directory = Path(tempfile.mkdtemp(prefix="allegro-link-test-"))
    embedded = EmbeddedPostgres(directory / "pgdata", delete_on_exit=True)
    embedded.start()
    try:
        yield PgServer(embedded.url("postgres"), embedded=embedded)
    finally:
        embedded.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def new_database_name(label: str) -> str:
    return f"allegro_link_{label}_{os.getpid()}_{secrets.token_hex(3)}"


async def create_migrated_database(server: PgServer, name: str) -> str:
    await create_database(server.url("postgres"), name, exist_ok=False)
    url = server.url(name)
    await alembic(command.upgrade, url, "head")
    return url


async def alembic(action: Callable[..., None], url: str, revision: str) -> None:
    """Alembic's env.py runs its own event loop, so commands run in a worker thread."""
    await asyncio.to_thread(action, alembic_config(url), revision)


async def drop(server: PgServer, name: str) -> None:
    await drop_database(server.url("postgres"), name)


async def truncate_all(url: str) -> None:
    """Reset every table between tests (cheap, and works for apps in other processes too)."""
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await _end_leftover_sessions(connection)
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


class LeftoverSessionWarning(UserWarning):
    """A test left a session with an open transaction in the database it shares with the next test."""


_OTHER_SESSIONS = """
    FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


async def _end_leftover_sessions(connection: AsyncConnection) -> None:
    """End every other session in the test's database, so that nothing of one test reaches the next.

    By the time this runs the test's apps, engines and processes are stopped. A session still open
    is one that outlived them (a server thread that did not stop in time, a connection a cancelled
    task never gave back); one in a transaction may hold a lock the next test waits on until its
    statement timeout: the feed's sequencer lock once made a later test's events never appear.
    """
    busy = (
        await connection.execute(
            text(
                f"SELECT state, now() - xact_start AS in_transaction_for, now() - state_change AS idle_for, "
                f"left(query, 200) {_OTHER_SESSIONS} AND state <> 'idle'"
            )
        )
    ).all()
    if busy:
        warnings.warn(f"sessions left open by a test: {busy}", LeftoverSessionWarning, stacklevel=1)
    await connection.execute(text(f"SELECT pg_terminate_backend(pid) {_OTHER_SESSIONS}"))
