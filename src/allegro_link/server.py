"""`allegro-link serve`: uvicorn with production settings."""

from __future__ import annotations

import functools
from typing import Any

import uvicorn
from fastapi import FastAPI

from allegro_link.app import create_app
from allegro_link.http_deadlines import DeadlineHttpToolsProtocol
from allegro_link.logs import configure_logging
from allegro_link.settings import Settings, load_settings


def app_factory() -> FastAPI:
    """uvicorn factory (also used by each worker process when --workers > 1)."""
    settings = load_settings(Settings)
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)


def connection_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn options that bound what slow or numerous clients can hold (tests serve with them too)."""
    return {
        # A partial, not a class, so that the deadlines travel with the config to worker processes.
        "http": functools.partial(
            DeadlineHttpToolsProtocol,
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
        ),
        "timeout_keep_alive": settings.http_keepalive_timeout_seconds,
        "limit_concurrency": settings.http_max_connections,
    }


def serve(host: str, port: int, workers: int = 1) -> None:
    # Validate in the parent so that a bad setting is one clear line, not a traceback per worker.
    settings = load_settings(Settings)
    configure_logging(settings.log_level, json=settings.log_json)
    uvicorn.run(
        "allegro_link.server:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # the request middleware logs requests without query strings
        log_config=None,
        server_header=False,
        # Off: uvicorn would trust X-Forwarded-For from 127.0.0.1 by default. The access log reads it
        # from ALLEGRO_LINK_TRUSTED_PROXIES only (ops/middleware.py); nothing else uses it.
        proxy_headers=False,
        timeout_graceful_shutdown=20,
        **connection_limits(settings),
    )
