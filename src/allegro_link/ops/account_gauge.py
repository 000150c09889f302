"""`allegro_link_accounts{status}`: filled when the app starts, then kept fresh by a cheap loop.

Alerts on this gauge must not misfire after each deploy, so it cannot wait for the keep-alive's first
pass (minutes after start, and never when the keep-alive is off). The query is one GROUP BY over the
accounts' status columns, run once a minute per process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.errors import is_connection_error
from allegro_link.ops.database import describe_refusal
from allegro_link.ops.metrics import Metrics
from allegro_link.tokens.keepalive import update_gauges

log = structlog.get_logger(__name__)

REFRESH_INTERVAL_SECONDS = 60.0


async def fill_at_start(
    sessionmaker: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    *,
    timeout_seconds: float,
    soon_window: timedelta,
) -> bool:
    """Fill the gauge; if the database turns us away, say why in one line and start anyway.

    Starting anyway keeps /healthz and /readyz answering (readiness says the same thing), and the
    service serves as soon as the database is fixed, without a restart.
    """
    try:
        async with asyncio.timeout(timeout_seconds):
            await update_gauges(sessionmaker, metrics, soon_window=soon_window)
    except Exception as exc:
        log.error("app.database_unavailable", detail=describe_start_failure(exc))
        return False
    return True


def describe_start_failure(exc: BaseException) -> str:
    refusal = describe_refusal(exc)
    if refusal is not None:
        return refusal
    if isinstance(exc, ProgrammingError):
        return "The database has no schema; run `allegro-link migrate`."
    if isinstance(exc, TimeoutError) or is_connection_error(exc):
        return "The database cannot be reached."
    return f"The database query failed ({type(exc).__name__})."


async def refresh_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    *,
    soon_window: timedelta,
    interval_seconds: float = REFRESH_INTERVAL_SECONDS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    while True:
        await sleep(interval_seconds)
        try:
            await update_gauges(sessionmaker, metrics, soon_window=soon_window)
        except Exception as exc:  # a database blip must not end the loop; the next pass retries
            log.warning("accounts_gauge.refresh_failed", error=type(exc).__name__)
