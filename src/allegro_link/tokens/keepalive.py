"""Keep-alive: keep accounts from lapsing, and say so in time when it cannot.

Two things end an account's access (`accounts.deadline`): its refresh token dies after 3 months
unrefreshed, and Allegro withdraws access to an account the application has not used for 90 days.
Each pass, so:

- accounts whose refresh token has less than `window` left are refreshed (never earlier): the broker
  takes each row with `FOR UPDATE SKIP LOCKED` and re-checks it, so two replicas never refresh the
  same account;
- accounts not used for a while get a real API call (`keepalive_use`);
- accounts whose deadline is near are warned about (`accounts.warnings`), and the gauges updated.

Every replica runs the loop. The first two call Allegro and are off with
`ALLEGRO_LINK_KEEPALIVE_ENABLED=false`; the warnings and gauges run regardless. One token bucket caps
the refreshes and calls together far below Allegro's 9000 requests/min per client id, and jitter
spreads the replicas' passes apart.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.accounts.deadline import sql_relogin_soon
from allegro_link.accounts.models import Account, AccountStatus
from allegro_link.accounts.status import sql_needs_relogin
from allegro_link.accounts.warnings import warn_relogin_soon
from allegro_link.db import utcnow
from allegro_link.ops.metrics import Metrics
from allegro_link.tokens.broker import TokenBroker
from allegro_link.tokens.keepalive_use import KeepAliveUse
from allegro_link.tokens.ratelimit import RateLimiter

__all__ = ["KeepAlive", "RateLimiter", "keepalive_forever", "sweep_once", "update_gauges"]

log = structlog.get_logger(__name__)

SWEEP_BATCH = 500


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


async def update_gauges(
    sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics, *, soon_window: timedelta
) -> None:
    async with sessionmaker() as session:
        relogin = sql_needs_relogin()
        rows = (await session.execute(select(relogin, func.count()).group_by(relogin))).all()
        soon = (
            await session.execute(
                select(func.count()).select_from(Account).where(sql_relogin_soon(soon_window))
            )
        ).scalar_one()
        oldest_failure = (
            await session.execute(
                select(func.min(Account.keepalive_failed_at)).where(Account.status == AccountStatus.ACTIVE)
            )
        ).scalar_one()
    counts = {bool(needs): int(count) for needs, count in rows}
    metrics.accounts_by_status.labels("active").set(counts.get(False, 0))
    metrics.accounts_by_status.labels("relogin_required").set(counts.get(True, 0))
    metrics.accounts_relogin_soon.set(int(soon))
    age = (utcnow() - oldest_failure).total_seconds() if oldest_failure is not None else 0.0
    metrics.keepalive_oldest_failure_seconds.set(max(0.0, age))


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """One replica's keep-alive: what a pass does, with which settings."""

    sessionmaker: async_sessionmaker[AsyncSession]
    broker: TokenBroker
    use: KeepAliveUse
    metrics: Metrics
    enabled: bool  # False: no call to Allegro; warnings and gauges still run
    refresh_window: timedelta
    soon_window: timedelta

    async def run_pass(self, limiter: RateLimiter) -> None:
        if self.enabled:
            await sweep_once(self.sessionmaker, self.broker, window=self.refresh_window, limiter=limiter)
            await self.use.run_pass(limiter)
        await warn_relogin_soon(self.sessionmaker, self.soon_window)
        await update_gauges(self.sessionmaker, self.metrics, soon_window=self.soon_window)


async def keepalive_forever(keepalive: KeepAlive, *, interval_seconds: float, max_per_minute: int) -> None:
    limiter = RateLimiter(max_per_minute)
    while True:
        await asyncio.sleep(interval_seconds * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not security
        try:
            await keepalive.run_pass(limiter)
        except Exception as exc:  # a database blip must not kill the loop
            log.warning("keepalive.pass_failed", error=type(exc).__name__)
