"""Behind PgBouncer in transaction pooling mode (ALLEGRO_LINK_DB_PGBOUNCER=true), everything works.

A real PgBouncer with a server pool smaller than the service's own pool sits between the service and the
test PostgreSQL, so consecutive transactions run on different server connections and a server connection
serves many clients: migrations, the token path, a refresh under the row lock with two replicas
contending for it, and the keep-alive all go through it. Test helpers that set rows up talk to the
database directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from alembic import command
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.app import build_resources, create_app
from allegro_link.db import create_engine, utcnow
from allegro_link.embedded_pg import create_database, drop_database
from allegro_link.migrations_path import alembic_config, head_revision
from allegro_link.ops.metrics import Metrics
from allegro_link.settings import DatabaseSettings, Settings
from allegro_link.tokens.keepalive import RateLimiter, sweep_once
from tests.deploy.pgbouncer import PGBOUNCER, running_pgbouncer
from tests.deploy.tools import require_tool
from tests.support.accounts import update_account
from tests.support.database import PgServer, new_database_name
from tests.support.factories import bearer, end_to_end_settings, owner_token
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness
from tests.support.live import serve_in_thread
from tests.support.tokens import expire_access, link_account, refresh_calls, stored_pair, works_at_allegro

# One xdist worker runs the heavy deployment tests one after another (`--dist loadgroup` in the Makefile),
# so that they do not all load the machine at once next to the timing-sensitive reliability tests.
pytestmark = pytest.mark.xdist_group("deploy")


@pytest.fixture(scope="module")
def pgbouncer_port(pg_server: PgServer) -> Iterator[int]:
    require_tool(PGBOUNCER, "pgbouncer")
    with running_pgbouncer(pg_server.server_url) as port:
        yield port


def through_pgbouncer(database_url: str, port: int) -> str:
    # An embedded server's URL names its socket directory in the query; PgBouncer listens on TCP.
    url = make_url(database_url).difference_update_query(["host"])
    return url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@pytest.fixture
def link_settings(
    database_url: str, fake_and_service_ports: tuple[int, int], pgbouncer_port: int
) -> Settings:
    """The end-to-end fixtures (tests/conftest.py) with the service's database behind PgBouncer."""
    return end_to_end_settings(
        through_pgbouncer(database_url, pgbouncer_port), fake_and_service_ports, db_pgbouncer=True
    )


def direct(settings: Settings, database_url: str) -> Settings:
    """The same settings, straight to PostgreSQL: for the test's own setup queries."""
    return settings.model_copy(update={"database_url": SecretStr(database_url), "db_pgbouncer": False})


@pytest.fixture
async def empty_database(pg_server: PgServer) -> AsyncIterator[str]:
    name = new_database_name("pgbouncer")
    await create_database(pg_server.url("postgres"), name, exist_ok=False)
    yield pg_server.url(name)
    await drop_database(pg_server.url("postgres"), name)


class TestMigrations:
    async def test_migrate_runs_through_pgbouncer(self, empty_database: str, pgbouncer_port: int) -> None:
        url = through_pgbouncer(empty_database, pgbouncer_port)
        await asyncio.to_thread(command.upgrade, alembic_config(url, pgbouncer=True), "head")
        engine = create_async_engine(empty_database)
        try:
            async with engine.connect() as connection:
                version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        finally:
            await engine.dispose()
        assert version == head_revision()


class TestConnecting:
    async def test_without_the_setting_pgbouncer_refuses_the_session_settings(
        self, database_url: str, pgbouncer_port: int
    ) -> None:
        """Why the setting exists: per-session startup parameters do not pass PgBouncer."""
        url = through_pgbouncer(database_url, pgbouncer_port)
        plain = create_engine(DatabaseSettings(database_url=SecretStr(url), _env_file=None))
        try:
            with pytest.raises(Exception, match="unsupported startup parameter"):
                async with plain.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        finally:
            await plain.dispose()

    async def test_many_concurrent_transactions_share_few_server_connections(
        self, database_url: str, pgbouncer_port: int
    ) -> None:
        """Statements prepared by one client's transaction never collide with, or get reused by, another's."""
        settings = DatabaseSettings(
            database_url=SecretStr(through_pgbouncer(database_url, pgbouncer_port)),
            db_pgbouncer=True,
            _env_file=None,
        )
        engine = create_engine(settings)

        async def transactions(worker: int) -> list[int]:
            seen = []
            for round_ in range(10):
                async with engine.begin() as connection:
                    # The same statement text in every client: what a shared statement cache would reuse.
                    seen.append(await connection.scalar(text("SELECT :n + 1"), {"n": worker * 100 + round_}))
                    await connection.execute(text("SET LOCAL lock_timeout = 1000"))
            return seen

        try:
            results = await asyncio.gather(*(transactions(worker) for worker in range(20)))
        finally:
            await engine.dispose()
        assert results == [[worker * 100 + round_ + 1 for round_ in range(10)] for worker in range(20)]

    async def test_reads_asked_for_in_autocommit_work(self, database_url: str, pgbouncer_port: int) -> None:
        """The token path reads in autocommit; outside a transaction asyncpg's prepare and execute could
        reach different server connections, so the setting runs such reads in a transaction."""
        settings = DatabaseSettings(
            database_url=SecretStr(through_pgbouncer(database_url, pgbouncer_port)),
            db_pgbouncer=True,
            _env_file=None,
        )
        engine = create_engine(settings)
        reader = engine.execution_options(isolation_level="AUTOCOMMIT")

        async def reads(worker: int) -> list[int]:
            seen = []
            for round_ in range(10):
                async with reader.connect() as connection:
                    seen.append(
                        await connection.scalar(text("SELECT CAST(:n AS int) + 1"), {"n": worker + round_})
                    )
            return seen

        try:
            results = await asyncio.gather(*(reads(worker * 100) for worker in range(20)))
        finally:
            await engine.dispose()
        assert results == [[worker * 100 + round_ + 1 for round_ in range(10)] for worker in range(20)]


class TestServing:
    async def test_ready_and_the_token_path_works(self, harness: LinkHarness, database_url: str) -> None:
        assert (await harness.service.get("/readyz")).status_code == 200
        linked = await link_account(harness, key_settings=direct(harness.settings, database_url))

        listed = await asyncio.gather(
            *(harness.service.get("/accounts", headers=bearer(owner_token("owner-a"))) for _ in range(30))
        )
        assert {response.status_code for response in listed} == {200}
        token = await linked.token()
        assert token.status_code == 200, token.text
        assert await works_at_allegro(harness.fake, token.json()["access_token"])

    async def test_two_replicas_refresh_once_under_the_row_lock(
        self, harness: LinkHarness, link_settings: Settings, database_url: str
    ) -> None:
        linked = await link_account(
            harness, "Sprzedawca2", key_settings=direct(harness.settings, database_url)
        )
        # A slow Allegro keeps the row locked while the other replica's requests queue on the lock.
        await linked.fault(kind="delay", delay_seconds=0.5)
        await expire_access(direct(harness.settings, database_url), linked.account_id)
        with serve_in_thread(create_app(link_settings)) as second_replica:
            urls = [str(harness.service.base_url), second_replica]
            async with httpx.AsyncClient(timeout=30) as http:
                responses = await asyncio.gather(
                    *(linked.token(via=http, base_url=urls[i % 2]) for i in range(40))
                )
        assert [response.status_code for response in responses] == [200] * 40
        assert len({response.json()["access_token"] for response in responses}) == 1
        assert await linked.refresh_calls() == 1
        assert (await stored_pair(direct(harness.settings, database_url), linked.account_id)).version == 2

    async def test_the_keepalive_refreshes_through_pgbouncer(
        self, harness: LinkHarness, link_settings: Settings, database_url: str
    ) -> None:
        linked = await harness.link("owner-a", "Sprzedawca3")
        account_id = linked.json()["account"]["id"]
        await update_account(
            direct(harness.settings, database_url),
            account_id,
            refresh_token_expires_at=utcnow() + timedelta(days=3),
        )
        resources = build_resources(link_settings, Metrics())
        try:
            refreshed = await sweep_once(
                resources.sessionmaker, resources.tokens, window=timedelta(days=14), limiter=RateLimiter(6000)
            )
        finally:
            await resources.http.aclose()
            await resources.engine.dispose()
        assert refreshed == 1
        assert await refresh_calls(harness) == 1
        assert (await stored_pair(direct(harness.settings, database_url), account_id)).version == 2

    async def test_a_long_poll_of_the_feed_sees_a_new_event_without_notifications(
        self, harness: LinkHarness, database_url: str
    ) -> None:
        # Through PgBouncer in transaction mode LISTEN hears nothing: the poll must look again by itself.
        key = await new_api_key(direct(harness.settings, database_url), "events:read")
        empty = await harness.service.get("/events", headers=bearer(key))
        cursor = empty.json()["next_cursor"]
        asked = time.monotonic()
        waiting = asyncio.create_task(
            harness.service.get(
                "/events", params={"after": cursor, "wait": 30}, headers=bearer(key), timeout=60
            )
        )
        linked = await harness.link("owner-a", "Sprzedawca1")
        assert linked.status_code == 200, linked.text
        answered = await waiting
        assert answered.status_code == 200, answered.text
        assert [event["type"] for event in answered.json()["items"]] == ["account.linked"]
        # Well before the 30 s wait ran out: the answer came from a look, not from the deadline.
        assert time.monotonic() - asked < 20
