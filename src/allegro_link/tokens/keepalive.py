"""Keep-alive: refresh accounts whose refresh token would otherwise lapse.

Allegro's refresh token dies after 3 months unused. Accounts that no service asked a token for in a
while are refreshed when their refresh token has less than `window` left, and never earlier. Every
replica runs the loop: the broker takes each row with `FOR UPDATE SKIP LOCKED` and re-checks it, so
two replicas never refresh the same account. A token bucket caps the rate far below Allegro's
9000 requests/min per client id, and jitter spreads the replicas' passes apart.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.accounts.models import Account, AccountStatus
from allegro_link.accounts.status import sql_needs_relogin
from allegro_link.db import utcnow
from allegro_link.ops.metrics import Metrics
from allegro_link.tokens.broker import TokenBroker

log = structlog.get_logger(__name__)

SWEEP_BATCH = 500


class RateLimiter:
    """Token bucket: at most `per_minute` acquisitions a minute, evenly spaced."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = 60.0 / per_minute
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    async def acquire(self) -> None:
        now = self._clock()
        wait = self._next - now
        self._next = max(now, self._next) + self._interval
        if wait > 0:
            await self._sleep(wait)


async def sweep_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    broker: TokenBroker,
    *,
    window: timedelta,
    limiter: RateLimiter,
    limit: int = SWEEP_BATCH,
) -> int:
    """Refresh the accounts due now; returns how many were refreshed."""
    now = utcnow()
    due_before = now + window
    async with sessionmaker() as session:
        due = (
            (
                await session.execute(
                    select(Account.id)
                    .where(
                        Account.status == AccountStatus.ACTIVE,
                        Account.refresh_token_expires_at < due_before,
                        Account.refresh_token_expires_at > now,  # a dead refresh token cannot be refreshed
                    )
                    .order_by(Account.refresh_token_expires_at)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
    refreshed = 0
    for account_id in due:
        await limiter.acquire()
        try:
            if await broker.refresh_if_due(account_id, due_before):
                refreshed += 1
        except Exception as exc:  # one account's trouble must not stop the pass
            log.warning("keepalive.account_failed", account_id=str(account_id), error=type(exc).__name__)
    if due:
        log.info("keepalive.pass", due=len(due), refreshed=refreshed)
    return refreshed


async def update_status_gauge(sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics) -> None:
    async with sessionmaker() as session:
        relogin = sql_needs_relogin()
        rows = (await session.execute(select(relogin, func.count()).group_by(relogin))).all()
    counts = {bool(needs): int(count) for needs, count in rows}
    metrics.accounts_by_status.labels("active").set(counts.get(False, 0))
    metrics.accounts_by_status.labels("relogin_required").set(counts.get(True, 0))


async def keepalive_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    broker: TokenBroker,
    metrics: Metrics,
    *,
    window: timedelta,
    interval_seconds: float,
    max_per_minute: int,
) -> None:
    limiter = RateLimiter(max_per_minute)
    while True:
        await asyncio.sleep(interval_seconds * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not security
        try:
            await sweep_once(sessionmaker, broker, window=window, limiter=limiter)
            await update_status_gauge(sessionmaker, metrics)
        except Exception as exc:  # a database blip must not kill the loop
            log.warning("keepalive.pass_failed", error=type(exc).__name__)
