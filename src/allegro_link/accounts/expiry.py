"""Accounts whose refresh token passed its expiry with nothing running become `relogin_required`.

Reads already show such an account as `refresh_token_expired` (`accounts/status.py`); this loop makes it
a stored change with its `account.relogin_required` event, so that subscribers hear about it. It runs
beside the keep-alive, in every replica: rows are taken `FOR UPDATE SKIP LOCKED` and each is flipped once.
Passes are at most one keep-alive interval apart, so the event follows the expiry within that interval.
"""

from __future__ import annotations

import asyncio
import random

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer

from allegro_link.accounts import transitions
from allegro_link.accounts.models import Account, AccountStatus, ReloginReason

log = structlog.get_logger(__name__)

EXPIRY_BATCH = 200
ACTOR = "keepalive"


async def expire_lapsed_once(
    sessionmaker: async_sessionmaker[AsyncSession], *, limit: int = EXPIRY_BATCH
) -> int:
    """Flip up to `limit` lapsed accounts in one transaction; returns how many."""
    async with sessionmaker() as session:
        lapsed = (
            await session.scalars(
                select(Account)
                .options(
                    defer(Account.access_token_ciphertext, raiseload=True),
                    defer(Account.refresh_token_ciphertext, raiseload=True),
                )
                .where(Account.status == AccountStatus.ACTIVE, Account.refresh_token_expires_at <= func.now())
                .order_by(Account.refresh_token_expires_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for account in lapsed:
            await transitions.relogin_required(
                session,
                account,
                ReloginReason.REFRESH_TOKEN_EXPIRED,
                actor=ACTOR,
                changed_at=account.refresh_token_expires_at,
            )
        await session.commit()
    if lapsed:
        log.info("accounts.refresh_token_expired", count=len(lapsed))
    return len(lapsed)


async def expire_lapsed_forever(
    sessionmaker: async_sessionmaker[AsyncSession], *, interval_seconds: float
) -> None:
    while True:
        # Between half and one interval: never more than one keep-alive interval after an expiry.
        await asyncio.sleep(interval_seconds * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not security
        try:
            while await expire_lapsed_once(sessionmaker) == EXPIRY_BATCH:
                pass
        except Exception as exc:  # a database blip must not kill the loop
            log.warning("accounts.expiry_pass_failed", error=type(exc).__name__)
