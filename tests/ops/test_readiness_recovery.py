"""/readyz follows the database: 503 while it is down, 200 again once it is back, no restart."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx

from allegro_link.app import create_app
from allegro_link.embedded_pg import EmbeddedPostgres, create_database
from tests.support.database import PgServer, create_migrated_database, drop, new_database_name
from tests.support.factories import make_settings
from tests.support.live import lifespan


async def test_readyz_reports_database_outage_and_recovers() -> None:
    # Always its own embedded server, even when the suite runs on an external one: we stop it.
    directory = Path(tempfile.mkdtemp(prefix="allegro-link-ready-"))
    embedded = EmbeddedPostgres(directory / "pgdata", delete_on_exit=True)
    embedded.start()
    try:
        url = await create_migrated_database(PgServer(embedded.url("postgres"), embedded), "ready")
        settings = make_settings(url, db_connect_timeout_seconds=2.0)
        app = create_app(settings)
        async with lifespan(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                assert (await client.get("/readyz")).status_code == 200

                embedded.stop()
                down = await client.get("/readyz")
                assert down.status_code == 503
                assert down.headers["content-type"] == "application/problem+json"
                assert down.json()["code"] == "not_ready"
                assert "retry-after" in down.headers

                embedded.start()
                assert (await client.get("/readyz")).status_code == 200
    finally:
        embedded.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


async def test_readyz_is_503_on_an_unmigrated_database(pg_server: PgServer) -> None:
    name = new_database_name("empty")
    await create_database(pg_server.url("postgres"), name)
    try:
        app = create_app(make_settings(pg_server.url(name)))
        async with lifespan(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/readyz")
                assert response.status_code == 503
                assert "allegro-link migrate" in response.json()["detail"]
    finally:
        await drop(pg_server, name)
