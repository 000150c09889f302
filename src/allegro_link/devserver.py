"""`allegro-link dev` (what `make dev` runs): everything on one laptop, nothing to install but Python.

Embedded PostgreSQL under `.allegro-link/`, migrations, the fake Allegro and the service, with dev
secrets generated once and kept in `.allegro-link/dev-secrets.json` so restarts keep working.
Ctrl-C stops the service, then the fake, then PostgreSQL.

dev creates a full-scope API key, writes it to disk in clear and mints owner JWTs for anyone. That is
fine on its own embedded database with its own secrets, and a disaster anywhere else, so it uses
nothing from the environment but the log settings, and refuses to start when production settings are
around (in the environment or in `.env`): they mean this shell or directory is pointed at a real
deployment.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import uvicorn
from alembic import command
from dotenv import dotenv_values

from allegro_link.app import create_app
from allegro_link.auth.scopes import ACCOUNTS_READ, TOKENS_READ
from allegro_link.crypto.keys import generate_key_entry
from allegro_link.demo.owner_token import OwnerTokenMinter
from allegro_link.demo.routes import LINKED_PATH
from allegro_link.embedded_pg import EmbeddedPostgres
from allegro_link.fake_allegro.config import DEV_CLIENT_ID, DEV_CLIENT_SECRET
from allegro_link.logs import configure_logging
from allegro_link.migrations_path import alembic_config
from allegro_link.settings import ENV_PREFIX, Settings, load_settings

STATE_DIR = Path(".allegro-link")
DEV_OWNER_ID = "demo-owner"
DEV_DATABASE = "allegro_link"
DEV_KEY_SCOPES = (TOKENS_READ, ACCOUNTS_READ)
DOTENV = Path(".env")
# Where the banner suggests running `allegro-link webhooks listen` (its default port).
WEBHOOK_LISTEN_PORT = 8787
# The only settings dev takes from the environment: they change what it prints, not where it points.
DEV_ENVIRONMENT_SETTINGS = frozenset({"log_level", "log_json"})


class DevRefused(Exception):
    """dev will not start here; the message says why and what to do."""


def production_settings_present(environ: Mapping[str, str], dotenv: Path = DOTENV) -> list[str]:
    """The `ALLEGRO_LINK_*` settings set in `environ` or in `dotenv` that dev would not use."""
    names = {f"{ENV_PREFIX}{field}".upper() for field in Settings.model_fields} - {
        f"{ENV_PREFIX}{field}".upper() for field in DEV_ENVIRONMENT_SETTINGS
    }
    found = {name.upper() for name in environ if name.upper() in names}
    if dotenv.is_file():
        found |= {f"{name.upper()} (in {dotenv})" for name in dotenv_values(dotenv) if name.upper() in names}
    return sorted(found)


def _dev_secrets(path: Path) -> dict[str, str]:
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    values = {"owner_jwt_secret": secrets.token_urlsafe(48), "encryption_keys": generate_key_entry()}
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values


async def _dev_api_key(settings: Settings, secrets_path: Path, stored: dict[str, str]) -> str:
    """The dev service key kept in dev-secrets.json, created again if the database lost it."""
    from sqlalchemy import select

    from allegro_link.auth.api_keys import create_api_key, hash_api_key
    from allegro_link.auth.models import ApiKey
    from allegro_link.db import create_engine, create_sessionmaker

    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine).begin() as session:
            known = stored.get("api_key")
            if known:
                row = await session.scalar(
                    select(ApiKey).where(
                        ApiKey.secret_hash == hash_api_key(known), ApiKey.revoked_at.is_(None)
                    )
                )
                if row is not None:
                    return known
            key = await create_api_key(
                session, name=f"dev-{secrets.token_hex(3)}", scopes=list(DEV_KEY_SCOPES)
            )
    finally:
        await engine.dispose()
    stored["api_key"] = key
    return key


def _start_fake_allegro(settings: Settings, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    from allegro_link.fake_allegro import FakeAllegroConfig, FakeClient, create_fake_allegro_app

    config = FakeAllegroConfig(
        clients=[
            FakeClient(
                client_id=settings.client_id,
                client_secret=settings.client_secret.get_secret_value(),
                redirect_uris=[settings.redirect_uri],
            )
        ],
        controls_enabled=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_fake_allegro_app(config), host=host, port=port, log_config=None, access_log=False
        )
    )
    # uvicorn installs signal handlers only in the main thread, which keeps Ctrl-C for the service.
    thread = threading.Thread(target=server.run, name="fake-allegro", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError(f"the fake Allegro did not start on {host}:{port}")
    return server, thread


def run_dev(host: str, port: int, fake_port: int) -> None:
    present = production_settings_present(os.environ)
    if present:
        raise DevRefused(
            f"dev refuses to start: {', '.join(present)} set; dev uses only its own embedded database "
            "and generated secrets (unset them, or run dev from another directory or shell)"
        )
    # uvicorn re-raises a SIGTERM after its shutdown, which would end the process before the `finally`
    # below stops PostgreSQL; as an interrupt, it runs the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    STATE_DIR.mkdir(exist_ok=True)
    secrets_path = STATE_DIR / "dev-secrets.json"
    dev_secrets = _dev_secrets(secrets_path)
    embedded = EmbeddedPostgres(STATE_DIR / "pgdata")
    embedded.start()
    try:
        asyncio.run(embedded.create_database(DEV_DATABASE))
        settings = dev_settings(embedded.url(DEV_DATABASE), dev_secrets, port=port, fake_port=fake_port)
        configure_logging(settings.log_level, json=settings.log_json)
        command.upgrade(alembic_config(settings.database_url.get_secret_value()), "head")
        api_key = asyncio.run(_dev_api_key(settings, secrets_path, dev_secrets))
        secrets_path.write_text(json.dumps(dev_secrets, indent=2))
        minter = OwnerTokenMinter.for_settings(settings)
        fake_server, fake_thread = _start_fake_allegro(settings, host, fake_port)
        try:
            owner_jwt = minter.mint(DEV_OWNER_ID, lifetime_seconds=7 * 86400).token
            print(
                banner(
                    settings, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{fake_port}", owner_jwt, api_key
                )
            )
            sys.stdout.flush()
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(settings, owner_token_minter=minter),
                    host=host,
                    port=port,
                    log_config=None,
                    access_log=False,
                    proxy_headers=False,
                    timeout_graceful_shutdown=5,
                )
            )
            server.run()
        finally:
            fake_server.should_exit = True
            fake_thread.join(timeout=5)
    finally:
        embedded.cleanup()
        print("allegro-link dev: stopped", file=sys.stderr)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def dev_settings(database_url: str, dev_secrets: Mapping[str, str], *, port: int, fake_port: int) -> Settings:
    """The service's settings under dev: all given here, none read from `.env`."""
    base = f"http://127.0.0.1:{port}"
    fake_base = f"http://127.0.0.1:{fake_port}"
    return load_settings(
        Settings,
        _env_file=None,
        database_url=database_url,
        allegro_auth_url=fake_base,
        allegro_api_url=fake_base,
        client_id=DEV_CLIENT_ID,
        client_secret=DEV_CLIENT_SECRET,
        # Allegro refuses 127.0.0.0/8 redirect URIs but accepts localhost.
        redirect_uri=f"http://localhost:{port}/oauth/callback",
        return_url_allowlist=f"{base}/,http://localhost:{port}/",
        owner_jwt_secret=dev_secrets["owner_jwt_secret"],
        encryption_keys=dev_secrets["encryption_keys"],
        demo_enabled=True,
        log_json=os.environ.get(f"{ENV_PREFIX}LOG_JSON", "false"),
    )


def banner(settings: Settings, base: str, fake_base: str, owner_jwt: str, api_key: str) -> str:
    """What dev prints once everything is up: where things are and how to try them."""
    database_url = settings.database_url.get_secret_value()
    exports = " ".join(
        f"{name}={shlex.quote(value)}"
        for name, value in (
            (f"{ENV_PREFIX}DATABASE_URL", database_url),
            (f"{ENV_PREFIX}ENCRYPTION_KEYS", settings.encryption_keys.get_secret_value()),
        )
    )
    return_to = f"{base}{LINKED_PATH}"
    webhook_url = f"http://127.0.0.1:{WEBHOOK_LISTEN_PORT}/"
    lines = [
        "",
        "allegro-link dev is starting",
        f"  API docs      {base}/docs",
        f"  demo panel    {base}/demo",
        f"  readiness     {base}/readyz",
        f"  fake Allegro  {fake_base}/auth/oauth/authorize (any login works)",
        f"  database      {database_url}",
        "",
        f"  owner JWT ({DEV_OWNER_ID}, 7 days):",
        f"    {owner_jwt}",
        "",
        f"  service API key ({', '.join(DEV_KEY_SCOPES)}):",
        f"    {api_key}",
        "",
        "  Point the CLI at this stack from another shell (`allegro-link api-keys list`, ...):",
        f"    export {exports}",
        "  (dev itself refuses to start in a shell where these are set.)",
        "",
        "  Link an account:",
        f"    curl -s -X POST {base}/accounts/authorize -H 'Authorization: Bearer <owner JWT>' \\",
        f"         -H 'Content-Type: application/json' -d '{{\"return_to\": \"{return_to}\"}}'",
        "    open the authorization_url in a browser, type any login, click 'Powiąż konto';",
        f"    {return_to} then shows the link_session and the curl that completes the link:",
        f"    curl -s -X POST {base}/oauth/complete -H 'Authorization: Bearer <owner JWT>' \\",
        "         -H 'Content-Type: application/json' -d '{\"link_session\": \"<link_session>\"}'",
        "  Then fetch a token as a service:",
        f"    curl -s {base}/accounts/<account id>/token -H 'Authorization: Bearer <service API key>'",
        "",
        "  Watch webhooks from another shell (after the export above; `add` prints the whsec_… last):",
        f"    allegro-link webhooks add --url {webhook_url}",
        f"    allegro-link webhooks listen --port {WEBHOOK_LISTEN_PORT} --secret <whsec_…>",
        "",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)
