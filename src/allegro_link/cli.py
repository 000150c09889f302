"""`allegro-link` command line (every command is described in docs/api.md).

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

from allegro_link.auth.scopes import SCOPES
from allegro_link.fake_allegro.config import (
    DEV_CLIENT_ID,
    DEV_CLIENT_SECRET,
    DEV_REDIRECT_URI,
    FakeAllegroConfig,
    FakeConfigError,
)
from allegro_link.settings import ConfigError, DatabaseSettings
from allegro_link.webhooks.cli import WebhookCliError
from allegro_link.webhooks.cli import register as register_webhooks

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
    from allegro_link.devserver import DevRefused, run_dev

    try:
        run_dev(host=args.host, port=args.port, fake_port=args.fake_port)
    except DevRefused as exc:
        raise CliError(str(exc)) from None
    return 0


def _cmd_fake_allegro(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from allegro_link.fake_allegro.server import serve

    serve(args.host, args.port, replace(FakeAllegroConfig.from_env(), controls_enabled=args.controls))
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


DB = "reads ALLEGRO_LINK_DATABASE_URL (and the optional ALLEGRO_LINK_DB_* settings)"
SETTINGS_DOC = "every setting, its default and meaning: docs/configuration.md"
Formatter = argparse.ArgumentDefaultsHelpFormatter
# Where the service and the fake Allegro listen unless told otherwise; `dev` runs both on one machine.
SERVICE_PORT = 8000
FAKE_ALLEGRO_PORT = 8001
LOCAL_HOST = "127.0.0.1"


def _listen_arguments(sub: argparse.ArgumentParser, *, host: str, port: int) -> None:
    sub.add_argument("--host", default=host, help="address to listen on")
    sub.add_argument("--port", type=int, default=port, help="port to listen on")


def build_parser() -> argparse.ArgumentParser:
    from allegro_link import __version__

    parser = argparse.ArgumentParser(
        prog="allegro-link",
        description=(
            "OAuth broker for Allegro seller accounts. Settings come from ALLEGRO_LINK_* environment "
            "variables, also read from .env in the working directory."
        ),
        epilog=f"Run `allegro-link COMMAND --help` for a command's options; {SETTINGS_DOC}.",
    )
    parser.add_argument("--version", action="version", version=f"allegro-link {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, details: str, handler: Handler) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=summary, description=f"{summary}. {details}", formatter_class=Formatter
        )
        sub.set_defaults(handler=handler)
        return sub

    serve = command(
        "serve",
        "Run the service (uvicorn)",
        "Reads every ALLEGRO_LINK_* setting; the required ones are ALLEGRO_LINK_DATABASE_URL, "
        "_CLIENT_ID, _CLIENT_SECRET, _REDIRECT_URI, _ENCRYPTION_KEYS, _RETURN_URL_ALLOWLIST and one of "
        f"_OWNER_JWT_SECRET / _OWNER_JWT_JWKS_URL ({SETTINGS_DOC}). Never migrates: run "
        "`allegro-link migrate` first.",
        _cmd_serve,
    )
    # A server in a container listens on every interface.
    _listen_arguments(serve, host="0.0.0.0", port=SERVICE_PORT)  # noqa: S104
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes (each has its own pool and metrics)"
    )

    command(
        "migrate",
        "Migrate the database to this version's schema (alembic upgrade head)",
        f"Run once per release, before the new version takes traffic; {DB}.",
        _cmd_migrate,
    )

    dev = command(
        "dev",
        "Run everything locally: embedded PostgreSQL, fake Allegro, the service (what `make dev` runs)",
        "Keeps its database and generated secrets in ./.allegro-link/ and prints the URLs, an owner JWT, "
        "a service API key and the database URL. Reads only ALLEGRO_LINK_LOG_LEVEL and _LOG_JSON; "
        "refuses to start when any other ALLEGRO_LINK_* setting is set in the environment or .env.",
        _cmd_dev,
    )
    dev.add_argument("--host", default=LOCAL_HOST, help="address of the service and the fake Allegro")
    dev.add_argument("--port", type=int, default=SERVICE_PORT, help="port of the service")
    dev.add_argument("--fake-port", type=int, default=FAKE_ALLEGRO_PORT, help="port of the fake Allegro")

    fake = command(
        "fake-allegro",
        "Run the Allegro OAuth emulator alone (for tests and demos, never in production)",
        f"Reads ALLEGRO_LINK_FAKE_CLIENT_ID (default {DEV_CLIENT_ID}), _CLIENT_SECRET "
        f"({DEV_CLIENT_SECRET}), _REDIRECT_URIS ({DEV_REDIRECT_URI}), "
        f"_ACCESS_TTL ({FakeAllegroConfig.access_token_ttl} s) "
        f"and _REFRESH_TTL ({FakeAllegroConfig.refresh_token_ttl} s).",
        _cmd_fake_allegro,
    )
    _listen_arguments(fake, host=LOCAL_HOST, port=FAKE_ALLEGRO_PORT)
    fake.add_argument(
        "--controls",
        action="store_true",
        help="serve the /__fake__/ test controls (create users, revoke grants, inject faults, move the "
        "clock); they let anyone act as any user, so they are off unless asked for",
    )

    command(
        "openapi",
        "Print the OpenAPI document (JSON)",
        "Needs no configuration; the same document the service serves at /openapi.json.",
        _cmd_openapi,
    )

    keys = commands.add_parser(
        "encryption-key", help="Token encryption keys", description="Token encryption keys."
    )
    key_commands = keys.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    generate = key_commands.add_parser(
        "generate",
        help="Print a new key entry (key_id:base64key) for ALLEGRO_LINK_ENCRYPTION_KEYS",
        description="Print a new key entry, alone on the last line. Needs no configuration.",
    )
    generate.set_defaults(handler=_cmd_encryption_key_generate)
    rotate = key_commands.add_parser(
        "rotate",
        help="Re-encrypt every stored token under the primary (first) key",
        description="Re-encrypt every stored token under the first key of ALLEGRO_LINK_ENCRYPTION_KEYS; "
        f"safe while serving and idempotent; exits 1 if values are left. {DB.capitalize()} and "
        "ALLEGRO_LINK_ENCRYPTION_KEYS.",
        formatter_class=Formatter,
    )
    rotate.add_argument("--batch-size", type=int, default=500, help="rows re-encrypted per transaction")
    rotate.set_defaults(handler=_cmd_encryption_key_rotate)

    api_keys = commands.add_parser(
        "api-keys", help="Service API keys", description=f"Service API keys; {DB}."
    )
    api_key_commands = api_keys.add_subparsers(dest="api_key_command", required=True, metavar="ACTION")
    create = api_key_commands.add_parser(
        "create",
        help="Create a key and print it once (only its hash is stored)",
        description=f"Create a key and print it once, alone on the last line; {DB}.",
    )
    create.add_argument("--name", required=True, help="unique name, shown in the audit log; never reused")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=list(SCOPES),
        help="repeat for several: " + ", ".join(f"{scope} {allows}" for scope, allows in SCOPES.items()),
    )
    create.set_defaults(handler=_cmd_api_keys_create)
    listing = api_key_commands.add_parser(
        "list", help="List keys (names, scopes, dates; never the keys)", description=f"List keys; {DB}."
    )
    listing.set_defaults(handler=_cmd_api_keys_list)
    revoke = api_key_commands.add_parser(
        "revoke",
        help="Revoke a key by name",
        description="Revoke a key by name; running services stop accepting it within "
        f"ALLEGRO_LINK_API_KEY_CACHE_SECONDS (30 s by default); {DB}.",
    )
    revoke.add_argument("name", help="the key's name")
    revoke.set_defaults(handler=_cmd_api_keys_revoke)

    accounts = commands.add_parser("accounts", help="Account maintenance", description="Account maintenance.")
    account_commands = accounts.add_subparsers(dest="accounts_command", required=True, metavar="ACTION")
    legacy = account_commands.add_parser(
        "import-legacy",
        help="Import accounts of the old login system as relogin_required",
        description="Import `owner_id,login` CSV rows as accounts that must log in again; all or "
        f"nothing, and accounts already present are skipped, so it can be re-run; {DB}.",
    )
    legacy.add_argument("file", metavar="FILE.csv", help="CSV file with owner_id,login rows")
    legacy.set_defaults(handler=_cmd_import_legacy)

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
