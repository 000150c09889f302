"""Outbox gauges: the oldest undelivered event's age per endpoint, and how many endpoints are disabled."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.ops.metrics import Metrics

log = structlog.get_logger(__name__)

STATS_INTERVAL_SECONDS = 15.0

_STATS = text(
    """
    SELECT ep.id, ep.enabled,
           coalesce(extract(epoch FROM now() - min(d.created_at) FILTER (WHERE d.state = 'pending')), 0)
    FROM webhook_endpoints AS ep LEFT JOIN webhook_deliveries AS d ON d.endpoint_id = ep.id
    GROUP BY ep.id, ep.enabled
    """
)


async def update_outbox_gauges(sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics) -> None:
    async with sessionmaker() as session:
        rows = (await session.execute(_STATS)).all()
    metrics.webhook_oldest_undelivered_seconds.clear()
    disabled = 0
    for endpoint_id, enabled, age in rows:
        if enabled:
            metrics.webhook_oldest_undelivered_seconds.labels(str(endpoint_id)).set(float(age))
        else:
            disabled += 1
    metrics.webhook_endpoints_disabled.set(disabled)


async def outbox_gauges_forever(sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics) -> None:
    while True:
        try:
            await update_outbox_gauges(sessionmaker, metrics)
        except Exception as exc:  # a database blip must not kill the loop
            log.warning("webhooks.stats_failed", error=type(exc).__name__)
        await asyncio.sleep(STATS_INTERVAL_SECONDS)
