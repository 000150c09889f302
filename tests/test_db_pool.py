"""Pooled connections the server has closed are replaced at checkout, with no request failing."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.database import PgServer
from tests.support.factories import bearer, owner_token


async def terminate_service_connections(pg_server: PgServer, database: str) -> int:
    """What a PostgreSQL restart or a failover does to the service's idle pooled connections."""
    admin = create_async_engine(pg_server.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            terminated = await connection.scalar(
                text(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :database AND application_name = 'allegro-link') AS t"
                ),
                {"database": database},
            )
    finally:
        await admin.dispose()
    return int(terminated or 0)


async def test_requests_after_the_server_closed_every_pooled_connection_succeed(
    client: httpx.AsyncClient, pg_server: PgServer, database_url: str
) -> None:
    owner = bearer(owner_token("owner-a"))
    # Several requests at once, so that the pool holds several connections.
    warm = await asyncio.gather(*(client.get("/accounts", headers=owner) for _ in range(5)))
    assert {response.status_code for response in warm} == {200}

    database = make_url(database_url).database
    assert database is not None
    assert await terminate_service_connections(pg_server, database) >= 1
    await asyncio.sleep(0.3)  # the event loop reads the end of each closed stream

    after = await asyncio.gather(*(client.get("/accounts", headers=owner) for _ in range(5)))
    assert [response.status_code for response in after] == [200] * 5
