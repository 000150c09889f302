"""Deleting link sessions nobody can use any more.

A session stays for 24 hours after its state expired, so that a late callback answers `state_expired`
rather than "unknown state"; after that (and once completed or abandoned) it is only clutter, and a
completed one holds no tokens anyway. Runs in every replica; the DELETE is idempotent.
"""

from __future__ import annotations

import asyncio
import random

import structlog
from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.db import utcnow
from allegro_link.oauth.flow import EXPIRED_STATE_MEMORY
from allegro_link.oauth.models import LinkSession

PURGE_INTERVAL_SECONDS = 600.0

log = structlog.get_logger(__name__)


async def purge_link_sessions(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    cutoff = utcnow() - EXPIRED_STATE_MEMORY
    async with sessionmaker.begin() as session:
        result = await session.execute(
            delete(LinkSession).where(
                LinkSession.expires_at < cutoff,
                func.coalesce(LinkSession.completion_expires_at, LinkSession.expires_at) < cutoff,
            )
        )
    deleted = int(getattr(result, "rowcount", 0) or 0)
    if deleted:
        log.info("link_sessions.purged", count=deleted)
    return deleted


async def purge_forever(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    while True:
        # Jitter spreads the replicas' runs apart.
        await asyncio.sleep(PURGE_INTERVAL_SECONDS * random.uniform(0.5, 1.5))  # noqa: S311 - not security
        try:
            await purge_link_sessions(sessionmaker)
        except Exception as exc:  # a database blip must not kill the loop
            log.warning("link_sessions.purge_failed", error=type(exc).__name__)
