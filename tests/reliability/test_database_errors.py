"""Database failures that are not outages of the whole server, and races with deletes: never a 500.

Found by the soak run (scripts/soak.py), each a 500 before: while PostgreSQL restarts, a connection may
be dropped in the middle of its start-up (asyncpg's ConnectionDoesNotExistError, SQLSTATE 08003); a
re-login started while the account was being deleted failed its insert on the foreign key; and a delete
deadlocked with the completion of the account's re-login (they took the same two locks in opposite
orders).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from allegro_link.app import create_app
from allegro_link.settings import Settings
from tests.support.accounts import insert_account
from tests.support.factories import ALLOWED_RETURN, bearer, make_settings, owner_token
from tests.support.link import LinkHarness, returned_params
from tests.support.live import lifespan

SSL_REQUEST_CODE = 80877103


async def _drop_during_startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A PostgreSQL going away: it accepts the start-up, says "authenticated", then hangs up."""
    try:
        first = await reader.read(8)
        if len(first) == 8 and struct.unpack("!ii", first)[1] == SSL_REQUEST_CODE:
            writer.write(b"N")  # no TLS; the client then sends its start-up message
            await writer.drain()
            await reader.read(1024)
        writer.write(b"R" + struct.pack("!ii", 8, 0))  # AuthenticationOk
        await writer.drain()
        await asyncio.sleep(0.05)
    finally:
        writer.close()


@pytest.fixture
async def dropping_database() -> AsyncIterator[httpx.AsyncClient]:
    server = await asyncio.start_server(_drop_during_startup, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(
        f"postgresql+asyncpg://postgres@127.0.0.1:{port}/gone", db_connect_timeout_seconds=2
    )
    try:
        async with lifespan(create_app(settings)) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield client
    finally:
        server.close()
        await server.wait_closed()


class TestConnectionDroppedDuringStartup:
    @pytest.mark.parametrize(
        ("method", "path", "who", "code"),
        [
            ("GET", "/accounts", "owner", "database_unavailable"),
            ("POST", "/accounts/authorize", "owner", "database_unavailable"),
            (
                "GET",
                "/accounts/0190a4d2-0000-7000-8000-000000000000/token",
                "service",
                "database_unavailable",
            ),
            ("GET", "/readyz", None, "not_ready"),
        ],
    )
    async def test_is_a_503_problem(
        self, dropping_database: httpx.AsyncClient, method: str, path: str, who: str | None, code: str
    ) -> None:
        headers = {}
        if who == "owner":
            headers = bearer(owner_token("owner-a"))
        elif who == "service":
            headers = bearer("alk_AAAAAAAAAAAA_" + "A" * 43)  # the key lookup needs the database
        response = await dropping_database.request(
            method, path, headers=headers, json={"return_to": ALLOWED_RETURN} if method == "POST" else None
        )
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code
        assert "retry-after" in response.headers


class TestReloginRacingADelete:
    async def test_a_relogin_started_while_the_account_is_being_deleted_is_404(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        account = await insert_account(settings, owner_id="owner-a")
        engine = create_async_engine(settings.database_url.get_secret_value())
        try:
            async with engine.connect() as deleting:
                # The owner's other tab deletes the account; its transaction has not committed yet.
                await deleting.begin()
                await deleting.execute(text("DELETE FROM accounts WHERE id = :id"), {"id": account.id})
                relogin = asyncio.create_task(
                    client.post(
                        f"/accounts/{account.id}/authorize",
                        json={"return_to": ALLOWED_RETURN},
                        headers=bearer(owner_token("owner-a")),
                    )
                )
                await _until_waiting_on_a_lock(engine)
                await deleting.commit()
            response = await relogin
        finally:
            await engine.dispose()
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"


async def _until_waiting_on_a_lock(engine: AsyncEngine, count: int = 1) -> None:
    for _ in range(500):
        async with engine.connect() as probe:
            waiting = await probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'allegro-link' AND wait_event_type = 'Lock'"
                )
            )
        if waiting is not None and waiting >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} requests ever waited for a lock")


class TestDeleteRacingACompletion:
    async def test_deleting_an_account_while_its_relogin_completes_does_not_deadlock(
        self, harness: LinkHarness
    ) -> None:
        account_id = (await harness.link("owner-a", "Sprzedawca1")).json()["account"]["id"]
        url = await harness.start("owner-a", account_id=account_id)
        link_session = returned_params(await harness.callback(await harness.consent(url, "Sprzedawca1")))[
            "link_session"
        ]
        owner = bearer(owner_token("owner-a"))
        engine = create_async_engine(harness.settings.database_url.get_secret_value())
        try:
            async with engine.connect() as holder:
                # Hold the account so that both requests queue up behind it: the delete first.
                await holder.begin()
                await holder.execute(
                    text("SELECT 1 FROM accounts WHERE id = :id FOR UPDATE"), {"id": account_id}
                )
                deleting = asyncio.create_task(
                    harness.service.delete(f"/accounts/{account_id}", headers=owner)
                )
                await _until_waiting_on_a_lock(engine, count=1)
                completing = asyncio.create_task(harness.complete("owner-a", link_session))
                await _until_waiting_on_a_lock(engine, count=2)
                await holder.rollback()
            deleted, completed = await asyncio.gather(deleting, completing)
        finally:
            await engine.dispose()
        assert deleted.status_code == 204, deleted.text
        assert completed.status_code == 404, completed.text
        assert (await harness.service.get(f"/accounts/{account_id}", headers=owner)).status_code == 404
