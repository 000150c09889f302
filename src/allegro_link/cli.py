"""`allegro-link` command line (CONTRACT section 2).

Each subcommand loads only the settings it uses. Failures print one line to stderr and exit non-zero;
anything a script should capture (a new key) is alone on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from allegro_link.fake_allegro.config import FakeConfigError
from allegro_link.settings import ConfigError, DatabaseSettings
from allegro_link.webhooks.cli import WebhookCliError

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def _cmd_serve(args: argparse.Namespace) -> int:
    from allegro_link.server import serve

    serve(host=args.host, port=args.port, workers=args.workers)
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from alembic import command

    from allegro_link.migrations_path import alembic_config
    from allegro_link.settings import DatabaseSettings, load_settings

    settings = load_settings(DatabaseSettings)
    command.upgrade(alembic_config(settings.database_url.get_secret_value()), "head")
    print("database migrated to head")
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from allegro_link.devserver import run_dev

    run_dev(host=args.host, port=args.port, fake_port=args.fake_port)
    return 0


def _cmd_fake_allegro(args: argparse.Namespace) -> int:
    from allegro_link.fake_allegro import FakeAllegroConfig
    from allegro_link.fake_allegro.server import serve

    serve(args.host, args.port, FakeAllegroConfig.from_env())
    return 0


def _cmd_openapi(args: argparse.Namespace) -> int:
    from allegro_link.openapi import openapi_json

    sys.stdout.write(openapi_json())
    return 0


def _cmd_encryption_key_generate(args: argparse.Namespace) -> int:
    from allegro_link.crypto.keys import generate_key_entry

    print("# add to ALLEGRO_LINK_ENCRYPTION_KEYS (first entry encrypts, all decrypt):")
    print(generate_key_entry())
    return 0


async def _with_database(settings: DatabaseSettings, work: Callable[[AsyncEngine], Awaitable[int]]) -> int:
    from allegro_link.db import create_engine

    engine = create_engine(settings, pool_size=2, max_overflow=0)
    try:
        return await work(engine)
    finally:
        await engine.dispose()


def _cmd_encryption_key_rotate(args: argparse.Namespace) -> int:
    from allegro_link.crypto.keys import KeyRing
    from allegro_link.crypto.rotate import rotate_encryption
    from allegro_link.settings import KeyRingSettings, load_settings

    settings = load_settings(KeyRingSettings)

    async def work(engine: AsyncEngine) -> int:
        report = await rotate_encryption(
            engine, KeyRing(settings.encryption_key_ring), batch_size=args.batch_size
        )
        for column, count in report.rotated.items():
            print(f"{column}: {count} re-encrypted")
        for blob in report.unreadable:
            print(f"unreadable: {blob}", file=sys.stderr)
        if report.still_pending:
            print(f"{report.still_pending} values still under an old key (rows were busy); run again")
        print(f"primary key {report.primary_key_id}: {report.total_rotated} values re-encrypted")
        return 0 if report.complete else 1

    return asyncio.run(_with_database(settings, work))


def _cmd_api_keys_create(args: argparse.Namespace) -> int:
    from allegro_link.auth.api_keys import ApiKeyError, create_api_key
    from allegro_link.db import create_sessionmaker
    from allegro_link.settings import DatabaseSettings, load_settings

    async def work(engine: AsyncEngine) -> int:
        try:
            async with create_sessionmaker(engine).begin() as session:
                key = await create_api_key(session, name=args.name, scopes=args.scope)
        except ApiKeyError as exc:
            raise CliError(str(exc)) from None
        print(f"# API key {args.name!r} ({', '.join(args.scope)}); shown once, only its hash is stored:")
        print(key)
        return 0

    return asyncio.run(_with_database(load_settings(DatabaseSettings), work))


def _cmd_api_keys_list(args: argparse.Namespace) -> int:
    from allegro_link.auth.api_keys import list_api_keys
    from allegro_link.db import create_sessionmaker
    from allegro_link.settings import DatabaseSettings, load_settings

    async def work(engine: AsyncEngine) -> int:
        async with create_sessionmaker(engine)() as session:
            keys = await list_api_keys(session)
        for key in keys:
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            print(f"{key.name}\t{','.join(key.scopes)}\tcreated {key.created_at:%Y-%m-%d %H:%M}\t{state}")
        return 0

    return asyncio.run(_with_database(load_settings(DatabaseSettings), work))


def _cmd_api_keys_revoke(args: argparse.Namespace) -> int:
    from allegro_link.auth.api_keys import revoke_api_key
    from allegro_link.db import create_sessionmaker
    from allegro_link.settings import DatabaseSettings, load_settings

    async def work(engine: AsyncEngine) -> int:
        async with create_sessionmaker(engine).begin() as session:
            revoked = await revoke_api_key(session, args.name)
        if not revoked:
            raise CliError(f"no active API key named {args.name!r}")
        print(f"revoked {args.name!r} (running services stop accepting it within their key cache time)")
        return 0

    return asyncio.run(_with_database(load_settings(DatabaseSettings), work))


def _cmd_import_legacy(args: argparse.Namespace) -> int:
    from allegro_link.accounts.legacy_import import LegacyImportError, import_legacy_accounts
    from allegro_link.db import create_sessionmaker
    from allegro_link.settings import DatabaseSettings, load_settings

    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")

    async def work(engine: AsyncEngine) -> int:
        try:
            report = await import_legacy_accounts(create_sessionmaker(engine), path)
        except LegacyImportError as exc:
            # Several bad rows make several lines; the first says that nothing was imported.
            raise CliError(str(exc)) from None
        print(f"imported {report.imported}, skipped {report.skipped} already present")
        return 0

    return asyncio.run(_with_database(load_settings(DatabaseSettings), work))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allegro-link", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="production server (uvicorn); never migrates by itself")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server in a container listens on all
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=_cmd_serve)

    migrate = commands.add_parser("migrate", help="alembic upgrade head on ALLEGRO_LINK_DATABASE_URL")
    migrate.set_defaults(handler=_cmd_migrate)

    dev = commands.add_parser(
        "dev", help="embedded PostgreSQL + fake Allegro + the service (what `make dev` runs)"
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--fake-port", type=int, default=8001)
    dev.set_defaults(handler=_cmd_dev)

    fake = commands.add_parser("fake-allegro", help="the Allegro OAuth emulator alone")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8001)
    fake.set_defaults(handler=_cmd_fake_allegro)

    openapi = commands.add_parser("openapi", help="print the OpenAPI document")
    openapi.set_defaults(handler=_cmd_openapi)

    keys = commands.add_parser("encryption-key", help="token encryption keys")
    key_commands = keys.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    generate = key_commands.add_parser("generate", help="print a new key entry")
    generate.set_defaults(handler=_cmd_encryption_key_generate)
    rotate = key_commands.add_parser("rotate", help="re-encrypt every stored token under the primary key")
    rotate.add_argument("--batch-size", type=int, default=500)
    rotate.set_defaults(handler=_cmd_encryption_key_rotate)

    api_keys = commands.add_parser("api-keys", help="service API keys")
    api_key_commands = api_keys.add_subparsers(dest="api_key_command", required=True, metavar="ACTION")
    create = api_key_commands.add_parser("create", help="print a new key once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scope", action="append", required=True, choices=["tokens:read", "accounts:read", "events:read"]
    )
    create.set_defaults(handler=_cmd_api_keys_create)
    listing = api_key_commands.add_parser("list", help="list keys (never the keys themselves)")
    listing.set_defaults(handler=_cmd_api_keys_list)
    revoke = api_key_commands.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_cmd_api_keys_revoke)

    accounts = commands.add_parser("accounts", help="account maintenance")
    account_commands = accounts.add_subparsers(dest="accounts_command", required=True, metavar="ACTION")
    legacy = account_commands.add_parser(
        "import-legacy", help="import accounts of the old login system (CSV)"
    )
    legacy.add_argument("file", metavar="FILE.csv")
    legacy.set_defaults(handler=_cmd_import_legacy)

    from allegro_link.webhooks.cli import register as register_webhooks

    register_webhooks(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, FakeConfigError) as exc:
        print(f"allegro-link: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (CliError, WebhookCliError) as exc:
        print(f"allegro-link: {exc}", file=sys.stderr)
        return 1
    except (OSError, SQLAlchemyError) as exc:
        # The database (or a file) is not there: one line, not a traceback.
        print(f"allegro-link: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
