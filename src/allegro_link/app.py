"""The application factory. Nothing is created at import time: `create_app(settings)` builds it all."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from allegro_link import __version__
from allegro_link.accounts.expiry import expire_lapsed_forever
from allegro_link.accounts.routes import router as accounts_router
from allegro_link.allegro.client import AllegroClient
from allegro_link.apidocs import docs_router
from allegro_link.auth.api_keys import ApiKeyVerifier
from allegro_link.auth.owner import OwnerTokenVerifier
from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import create_engine, create_sessionmaker
from allegro_link.demo import demo_router
from allegro_link.demo.owner_token import OwnerTokenMinter
from allegro_link.errors import install_error_handlers, problem_response
from allegro_link.events.routes import router as events_router
from allegro_link.events.signals import EventSignals
from allegro_link.events.tasks import start_event_tasks
from allegro_link.migrations_path import head_revision
from allegro_link.oauth.flow import LinkFlow
from allegro_link.oauth.purge import purge_forever
from allegro_link.oauth.return_to import ReturnToPolicy
from allegro_link.oauth.routes import router as oauth_router
from allegro_link.ops import account_gauge
from allegro_link.ops.metrics import Metrics
from allegro_link.ops.middleware import BodyTooLarge, RequestContextMiddleware
from allegro_link.ops.routes import router as ops_router
from allegro_link.resources import Resources
from allegro_link.settings import Settings
from allegro_link.tokens.audit import TokenAuditLog
from allegro_link.tokens.broker import TokenBroker
from allegro_link.tokens.fast_path import TOKEN_ROUTE, TokenFastPath
from allegro_link.tokens.keepalive import KeepAlive, keepalive_forever
from allegro_link.tokens.keepalive_use import KeepAliveUse
from allegro_link.tokens.routes import router as tokens_router

log = structlog.get_logger(__name__)
# The shortest a keep-alive claim lasts: one account's /me call with its retries ends well within it.
KEEPALIVE_MIN_LEASE_SECONDS = 120.0

DESCRIPTION = """\
OAuth broker for Allegro seller accounts. Owners (Polkurier customers, through their frontend) link
and re-link Allegro accounts; internal services fetch currently valid access tokens.

Every error is `application/problem+json` with a stable `code`.
"""


def build_resources(settings: Settings, metrics: Metrics) -> Resources:
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    http = create_http_client(settings)
    vault = TokenVault(KeyRing(settings.encryption_key_ring))
    events_engine = create_engine(settings, pool_size=settings.webhook_concurrency + 2, max_overflow=0)
    allegro = AllegroClient(
        http,
        auth_base_url=settings.auth_base_url,
        api_base_url=settings.api_base_url,
        client_id=settings.client_id,
        client_secret=settings.client_secret.get_secret_value(),
        redirect_uri=settings.redirect_uri,
    )
    return Resources(
        tokens=TokenBroker(
            sessionmaker,
            allegro,
            vault,
            metrics,
            allegro_deadline_seconds=settings.token_refresh_deadline_seconds,
            lock_timeout_seconds=settings.token_refresh_lock_timeout_seconds,
            read_concurrency=settings.db_pool_size + settings.db_max_overflow,
        ),
        token_audit=TokenAuditLog(sessionmaker, metrics),
        signals=EventSignals(),
        events_engine=events_engine,
        events_sessionmaker=create_sessionmaker(events_engine),
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        http=http,
        metrics=metrics,
        head_revision=head_revision(),
        vault=vault,
        allegro=allegro,
        owner_tokens=OwnerTokenVerifier(settings, http),
        api_keys=ApiKeyVerifier(sessionmaker, cache_ttl_seconds=settings.api_key_cache_seconds),
        link_flow=LinkFlow(
            sessionmaker,
            allegro,
            vault,
            ReturnToPolicy(settings.return_url_allowlist),
            state_ttl=timedelta(seconds=settings.link_state_ttl_seconds),
            completion_ttl=timedelta(seconds=settings.link_completion_ttl_seconds),
            max_pending_per_owner=settings.link_max_pending_per_owner,
        ),
    )


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    """The one outbound client (to Allegro). Explicit timeouts: a hung Allegro must not hang us."""
    timeout = httpx.Timeout(
        connect=settings.allegro_connect_timeout_seconds,
        read=settings.allegro_read_timeout_seconds,
        write=settings.allegro_read_timeout_seconds,
        pool=settings.allegro_connect_timeout_seconds,
    )
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
        headers={"User-Agent": f"allegro-link/{__version__}"},
    )


def build_keepalive(resources: Resources) -> KeepAlive:
    settings = resources.settings
    use = KeepAliveUse(
        resources.sessionmaker,
        resources.tokens,
        resources.allegro,
        resources.metrics,
        use_after=timedelta(days=settings.keepalive_use_after_days),
        # Long enough for one account's call and its retries; a failed call is retried after it.
        lease=timedelta(seconds=max(settings.keepalive_interval_seconds, KEEPALIVE_MIN_LEASE_SECONDS)),
    )
    return KeepAlive(
        resources.sessionmaker,
        resources.tokens,
        use,
        resources.metrics,
        enabled=settings.keepalive_enabled,
        refresh_window=timedelta(days=settings.keepalive_window_days),
        soon_window=settings.relogin_soon_window,
    )


# A shutdown must end (a rollout waits on it): a background task that does not stop within this after
# its cancellation is named in the log and left behind. Seen once in ~900 test apps: a stop that never ended.
BACKGROUND_STOP_SECONDS = 10.0


async def stop_background(
    tasks: list[asyncio.Task[Any]], *, grace_seconds: float = BACKGROUND_STOP_SECONDS
) -> None:
    for task in tasks:
        task.cancel()
    done, stuck = await asyncio.wait(tasks, timeout=grace_seconds)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "app.background_task_failed", task=task.get_name(), error=type(task.exception()).__name__
            )
    for task in stuck:
        log.error("app.background_task_stuck", task=task.get_name())


def create_app(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    owner_token_minter: OwnerTokenMinter | None = None,
) -> FastAPI:
    """The application. `owner_token_minter` is for `allegro-link dev` only: with it (and the demo on)
    the demo panel can mint owner JWTs for anyone. No setting can supply one, so `serve` never has it.
    """
    app_metrics = metrics or Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        resources = build_resources(settings, app_metrics)
        app.state.resources = resources  # for operators' debugging and fault-injection tests
        # Also the start-up check of the database: one line says why when it turns us away.
        soon_window = settings.relogin_soon_window
        await account_gauge.fill_at_start(
            resources.sessionmaker,
            app_metrics,
            timeout_seconds=settings.db_connect_timeout_seconds,
            soon_window=soon_window,
        )
        background = [
            asyncio.create_task(purge_forever(resources.sessionmaker), name="purge-link-sessions"),
            asyncio.create_task(
                account_gauge.refresh_forever(resources.sessionmaker, app_metrics, soon_window=soon_window),
                name="accounts-gauge",
            ),
        ]
        background.extend(start_event_tasks(resources))
        background.append(
            asyncio.create_task(
                keepalive_forever(
                    build_keepalive(resources),
                    interval_seconds=settings.keepalive_interval_seconds,
                    max_per_minute=settings.keepalive_max_per_minute,
                ),
                name="keepalive",
            )
        )
        # Always, like the keep-alive loop's warnings: an account whose refresh token lapses gets its
        # event even where the keep-alive's calls to Allegro are switched off.
        background.append(
            asyncio.create_task(
                expire_lapsed_forever(
                    resources.sessionmaker, interval_seconds=settings.keepalive_interval_seconds
                ),
                name="keepalive-expiry",
            )
        )
        resources.token_audit.start()
        log.info("app.started", allegro_auth_url=settings.auth_base_url, version=__version__)
        # What start-up made (modules, the app, the mappers: about 150,000 objects) lives as long as the
        # process; frozen, the collector's full passes stop walking it. Each walk paused every request
        # in flight for about 100 ms, which was most of the token endpoint's p99 (docs/performance.md).
        gc.freeze()
        try:
            yield {"resources": resources}
        finally:
            gc.unfreeze()  # collectable again, for a process that goes on (tests start many apps)
            await stop_background(background)
            await resources.tokens.aclose()
            await resources.api_keys.aclose()
            await resources.token_audit.stop()
            await resources.http.aclose()
            await resources.events_engine.dispose()
            await resources.engine.dispose()
            log.info("app.stopped")

    app = FastAPI(
        title="allegro-link",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served by docs_router from the package instead of a CDN; ReDoc would need a CDN too.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_tags=[
            {"name": "accounts", "description": "Linked Allegro accounts and their status."},
            {"name": "oauth", "description": "Linking and re-linking accounts through Allegro's login."},
            {"name": "tokens", "description": "Valid access tokens for internal services (API keys)."},
            {"name": "events", "description": "The feed of account events for internal services."},
            {"name": "ops", "description": "Health, readiness and metrics."},
        ],
    )
    install_error_handlers(app)

    async def body_too_large(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(413, "payload_too_large", "Request body too large", "The body is too large.")

    app.add_exception_handler(BodyTooLarge, body_too_large)
    app.include_router(accounts_router)
    app.include_router(oauth_router)
    app.include_router(tokens_router)
    app.include_router(events_router)
    app.include_router(ops_router)
    app.include_router(docs_router(app.title, app.openapi_url or "/openapi.json"))
    if settings.demo_enabled:
        app.include_router(demo_router(owner_token_minter))
    # Inside the request middleware (ids, metrics, access log, input guards), which wraps it too.
    app.add_middleware(TokenFastPath, route=TOKEN_ROUTE, handlers=app.exception_handlers)
    app.add_middleware(
        RequestContextMiddleware, metrics=app_metrics, trusted_proxies=settings.trusted_proxy_networks
    )
    return app
