"""Deleting link sessions nobody can use any more, and emptying the ones that only answer a late callback.

What each kind of row is still good for:
- a state waiting for its callback: everything (until it expires);
- an expired state: only answering a late callback with `state_expired`, for 24 hours after it
  expired (the callback's documented answer). That needs the state hash, the owner, `return_to` and
  `expires_at`: the PKCE verifier is dropped at once;
- a callback that failed (any error outcome) or whose completion is over (done, discarded, or the
  completion window passed): nothing. A replayed callback of its state is refused as unknown (400, the
  same answer as "already used"), so the row is deleted, held tokens and all;
- a callback whose exchange never recorded an outcome (the process died in between): nothing, an
  hour after the callback (an exchange in progress takes seconds; it must not lose its row).

Runs every minute in every replica (with jitter); both statements are idempotent.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import structlog
from sqlalchemy import and_, delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.db import utcnow
from allegro_link.oauth.flow import EXPIRED_STATE_MEMORY, CallbackOutcome
from allegro_link.oauth.models import LinkSession

PURGE_INTERVAL_SECONDS = 60.0
STALLED_CALLBACK_AFTER = timedelta(hours=1)

log = structlog.get_logger(__name__)


async def purge_link_sessions(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Delete what is useless and strip expired states to what `state_expired` needs; the rows deleted."""
    now = utcnow()
    memory_over = now - EXPIRED_STATE_MEMORY
    async with sessionmaker.begin() as session:
        result = await session.execute(
            delete(LinkSession).where(
                or_(
                    # expired states past their 24 hours, whether or not a late callback came
                    and_(
                        LinkSession.expires_at < memory_over,
                        or_(
                            LinkSession.callback_at.is_(None),
                            LinkSession.outcome == CallbackOutcome.STATE_EXPIRED,
                        ),
                    ),
                    LinkSession.completed_at.is_not(None),
                    and_(
                        LinkSession.outcome.is_not(None),
                        LinkSession.outcome.not_in([CallbackOutcome.COMPLETE, CallbackOutcome.STATE_EXPIRED]),
                    ),
                    and_(
                        LinkSession.outcome == CallbackOutcome.COMPLETE,
                        LinkSession.completion_expires_at < now,
                    ),
                    and_(
                        LinkSession.callback_at.is_not(None),
                        LinkSession.outcome.is_(None),
                        LinkSession.callback_at < now - STALLED_CALLBACK_AFTER,
                    ),
                )
            )
        )
        await session.execute(
            update(LinkSession)
            .where(
                LinkSession.callback_at.is_(None),
                LinkSession.expires_at <= now,
                LinkSession.code_verifier_ciphertext.is_not(None),
            )
            .values(code_verifier_ciphertext=None)
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
