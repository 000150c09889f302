"""Migrations: empty → head → base → head, and the models agree with the migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.embedded_pg import create_database
from allegro_link.migrations_path import head_revision
from allegro_link.models import Base
from tests.support.database import PgServer, alembic, drop, new_database_name


@pytest.fixture
async def scratch_url(pg_server: PgServer) -> AsyncIterator[str]:
    name = new_database_name("migrations")
    await create_database(pg_server.url("postgres"), name)
    yield pg_server.url(name)
    await drop(pg_server, name)


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            return set(names)
    finally:
        await engine.dispose()


async def _diff(url: str) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"compare_type": True, "compare_server_default": True}
                    ),
                    Base.metadata,
                )
            )
    finally:
        await engine.dispose()


class TestMigrations:
    async def test_upgrade_downgrade_upgrade(self, scratch_url: str) -> None:
        await alembic(command.upgrade, scratch_url, "head")
        assert {"accounts", "account_events", "link_sessions", "api_keys"} <= await _tables(scratch_url)

        await alembic(command.downgrade, scratch_url, "base")
        assert await _tables(scratch_url) <= {"alembic_version"}

        await alembic(command.upgrade, scratch_url, "head")
        engine = create_async_engine(scratch_url)
        async with engine.connect() as connection:
            version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        await engine.dispose()
        assert version == head_revision()

    async def test_models_and_migrations_agree(self, scratch_url: str) -> None:
        await alembic(command.upgrade, scratch_url, "head")
        assert await _diff(scratch_url) == []
