"""Alembic environment: runs migrations over asyncpg with the service's own URL."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from allegro_link.db import pgbouncer_connect_args
from allegro_link.models import Base
from allegro_link.settings import DatabaseSettings, PoolerSettings, load_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if isinstance(url, str):
        return url
    return load_settings(DatabaseSettings).database_url.get_secret_value()


def _behind_pgbouncer() -> bool:
    flag = config.attributes.get("db_pgbouncer")
    if isinstance(flag, bool):
        return flag
    return load_settings(PoolerSettings).db_pgbouncer


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    connect_args = pgbouncer_connect_args() if _behind_pgbouncer() else {}
    engine = create_async_engine(_database_url(), poolclass=NullPool, connect_args=connect_args)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure(connection)
    else:
        asyncio.run(_run_online())


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
