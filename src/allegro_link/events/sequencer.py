"""Gives committed events their place in the feed: `seq`, in commit order, after commit.

Why not order the feed by the insert id: ids are taken at insert, and transactions commit in another
order; a reader that had passed id 10 would never see id 9 committing after it. Here one sequencer at a
time (a transaction-scoped advisory lock, across replicas) numbers the events that have committed and
are not numbered yet, continuing from the highest number. Its transactions are serialised by that lock,
so numbers become visible in increasing order, and a reader that has seen number N has seen every
number below N: paging by `seq` never misses an event and never sees one twice. For one account, its
events are appended under its row lock, so they commit, and are numbered, in append order.
"""

from __future__ import annotations

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.db import sqlstate
from allegro_link.events.signals import SEQUENCED_CHANNEL, EventSignals, Signal
from allegro_link.ops.metrics import Metrics

log = structlog.get_logger(__name__)

SEQUENCER_LOCK = 0x616C_6576_0001  # an arbitrary constant ("alev"), the same in every replica
BATCH = 5000

_NUMBER = text(
    """
    WITH pending AS (
        SELECT id, row_number() OVER (ORDER BY id) AS rn
        FROM (SELECT id FROM account_events WHERE seq IS NULL ORDER BY id LIMIT :batch) AS unsequenced
    ), top AS (SELECT coalesce(max(seq), 0) AS seq FROM account_events)
    UPDATE account_events AS e SET seq = top.seq + pending.rn
    FROM pending, top
    WHERE e.id = pending.id
    RETURNING e.type
    """
)


async def sequence_once(sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics) -> int:
    """Number one batch of committed events; returns how many."""
    async with sessionmaker() as session:
        # Its own statement: the numbering statement's snapshot must be taken after the lock is held,
        # so that it sees the previous sequencer's numbers.
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEQUENCER_LOCK})
        types = list((await session.execute(_NUMBER, {"batch": BATCH})).scalars())
        if types:
            await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": SEQUENCED_CHANNEL})
        await session.commit()
    for event_type in types:
        metrics.events_appended.labels(event_type).inc()
    return len(types)


async def sequence_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    signals: EventSignals,
    metrics: Metrics,
    *,
    poll_seconds: float,
) -> None:
    while True:
        mark = signals.appended.mark()
        try:
            while await sequence_once(sessionmaker, metrics) == BATCH:
                pass
        except Exception as exc:  # a database blip must not kill the loop
            log.warning("events.sequence_failed", error=type(exc).__name__, sqlstate=sqlstate(exc))
        await Signal.wait(mark, poll_seconds)
