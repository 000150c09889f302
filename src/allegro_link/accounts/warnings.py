"""`account.relogin_soon`: warning once when an account's deadline enters the window, once at 3 days.

Detection runs in every replica's keep-alive loop (also with the keep-alive's Allegro calls turned off:
a warning matters most when nothing keeps the account alive). Which warning was sent, and for which
deadline, is kept on the row (`relogin_warned_stage`, `relogin_warned_deadline`), so each is sent once
whatever the number of replicas: rows are taken with `FOR UPDATE SKIP LOCKED` and the stage is moved
in the same transaction as the event, which `accounts.transitions.relogin_soon` appends (and with it
the webhook deliveries). When a use or a refresh moves the deadline out of the window,
the stage goes back to 0 and the warnings are armed again.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer

from allegro_link.accounts import transitions
from allegro_link.accounts.deadline import (
    days_left,
    relogin_deadline,
    sql_relogin_deadline,
    sql_relogin_soon,
    warning_stage,
)
from allegro_link.accounts.models import Account
from allegro_link.db import utcnow

log = structlog.get_logger(__name__)

WARN_BATCH = 500


async def warn_relogin_soon(sessionmaker: async_sessionmaker[AsyncSession], window: timedelta) -> int:
    """Re-arm the accounts whose deadline left the window; warn the ones due a warning. Returns warned."""
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Account)
            .where(Account.relogin_warned_stage > 0, sql_relogin_soon(window).is_not(True))
            .values(relogin_warned_stage=0, relogin_warned_deadline=None)
            .execution_options(synchronize_session=False)
        )
        due = (
            (
                await session.execute(
                    select(Account)
                    .options(defer(Account.access_token_ciphertext), defer(Account.refresh_token_ciphertext))
                    .where(sql_relogin_soon(window), Account.relogin_warned_stage < 2)
                    .order_by(sql_relogin_deadline())
                    .limit(WARN_BATCH)
                    .with_for_update(skip_locked=True)
                )
            )
            .scalars()
            .all()
        )
        now = utcnow()
        warned = 0
        for account in due:
            deadline = relogin_deadline(account, now)
            if deadline is None:
                continue
            stage = warning_stage(deadline, now, window)
            if stage <= account.relogin_warned_stage:
                continue
            account.relogin_warned_stage = stage
            account.relogin_warned_deadline = deadline
            days = days_left(deadline, now)
            await transitions.relogin_soon(
                session, account, deadline=deadline, days_left=days, actor="keepalive"
            )
            log.info("account.relogin_soon", account_id=str(account.id), days_left=days)
            warned += 1
    return warned
