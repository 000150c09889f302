"""`allegro-link dev` (what `make dev` runs): everything on one laptop, nothing to install but Python.

Embedded PostgreSQL under `.allegro-link/`, migrations, the fake Allegro and the service, with dev
secrets generated once and kept in `.allegro-link/dev-secrets.json` so restarts keep working.
Ctrl-C stops the service, then the fake, then PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path

import uvicorn
from alembic import command

from allegro_link.app import create_app
from allegro_link.crypto.keys import generate_key_entry
from allegro_link.demo.owner_token import mint_owner_jwt
from allegro_link.embedded_pg import EmbeddedPostgres
from allegro_link.logs import configure_logging
from allegro_link.migrations_path import alembic_config
from allegro_link.settings import Settings, load_settings

STATE_DIR = Path(".allegro-link")
DEV_OWNER_ID = "demo-owner"
DEV_DATABASE = "allegro_link"
DEV_CLIENT_ID = "allegro-link-dev"
DEV_CLIENT_SECRET = "allegro-link-dev-secret"  # noqa: S105 - known to the local fake Allegro only


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
                session, name=f"dev-{secrets.token_hex(3)}", scopes=["tokens:read", "accounts:read"]
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
    STATE_DIR.mkdir(exist_ok=True)
    dev_secrets = _dev_secrets(STATE_DIR / "dev-secrets.json")
    embedded: EmbeddedPostgres | None = None
    if "ALLEGRO_LINK_DATABASE_URL" not in os.environ:
        embedded = EmbeddedPostgres(STATE_DIR / "pgdata")
        embedded.start()
        asyncio.run(embedded.create_database(DEV_DATABASE))
        os.environ["ALLEGRO_LINK_DATABASE_URL"] = embedded.url(DEV_DATABASE)

    base = f"http://127.0.0.1:{port}"
    fake_base = f"http://127.0.0.1:{fake_port}"
    defaults = {
        "ALLEGRO_LINK_ALLEGRO_AUTH_URL": fake_base,
        "ALLEGRO_LINK_ALLEGRO_API_URL": fake_base,
        "ALLEGRO_LINK_CLIENT_ID": DEV_CLIENT_ID,
        "ALLEGRO_LINK_CLIENT_SECRET": DEV_CLIENT_SECRET,
        # Allegro refuses 127.0.0.0/8 redirect URIs but accepts localhost.
        "ALLEGRO_LINK_REDIRECT_URI": f"http://localhost:{port}/oauth/callback",
        "ALLEGRO_LINK_RETURN_URL_ALLOWLIST": f"{base}/,http://localhost:{port}/",
        "ALLEGRO_LINK_OWNER_JWT_SECRET": dev_secrets["owner_jwt_secret"],
        "ALLEGRO_LINK_ENCRYPTION_KEYS": dev_secrets["encryption_keys"],
        "ALLEGRO_LINK_DEMO_ENABLED": "true",
        "ALLEGRO_LINK_DEV_MODE": "true",
        "ALLEGRO_LINK_LOG_JSON": "false",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    settings = load_settings(Settings)
    configure_logging(settings.log_level, json=settings.log_json)

    try:
        command.upgrade(alembic_config(settings.database_url.get_secret_value()), "head")
        secrets_path = STATE_DIR / "dev-secrets.json"
        api_key = asyncio.run(_dev_api_key(settings, secrets_path, dev_secrets))
        secrets_path.write_text(json.dumps(dev_secrets, indent=2))
        fake_server, fake_thread = _start_fake_allegro(settings, host, fake_port)
        try:
            _print_banner(settings, base, fake_base, api_key)
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(settings),
                    host=host,
                    port=port,
                    log_config=None,
                    access_log=False,
                    timeout_graceful_shutdown=5,
                )
            )
            server.run()
        finally:
            fake_server.should_exit = True
            fake_thread.join(timeout=5)
    finally:
        if embedded is not None:
            embedded.cleanup()
        print("allegro-link dev: stopped", file=sys.stderr)


def _print_banner(settings: Settings, base: str, fake_base: str, api_key: str) -> None:
    owner_jwt = mint_owner_jwt(settings, DEV_OWNER_ID, lifetime_seconds=7 * 86400).token
    lines = [
        "",
        "allegro-link dev is starting",
        f"  API docs      {base}/docs",
        f"  demo panel    {base}/demo",
        f"  readiness     {base}/readyz",
        f"  fake Allegro  {fake_base}/auth/oauth/authorize (any login works)",
        "",
        f"  owner JWT ({DEV_OWNER_ID}, 7 days):",
        f"    {owner_jwt}",
        "",
        "  service API key (tokens:read, accounts:read):",
        f"    {api_key}",
        "",
        "  Link an account:",
        f"    curl -s -X POST {base}/accounts/authorize -H 'Authorization: Bearer <owner JWT>' \\",
        f"         -H 'Content-Type: application/json' -d '{{\"return_to\": \"{base}/demo\"}}'",
        "    open the authorization_url, type any login, click 'Powiąż konto';",
        "    back on the return_to page, POST /oauth/complete with the link_session it carries.",
        "  Then fetch a token as a service:",
        f"    curl -s {base}/accounts/<account id>/token -H 'Authorization: Bearer <service API key>'",
        "",
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)
