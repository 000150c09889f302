"""Appending to the account event log, and queueing the event's webhook deliveries, in one statement.

Only `accounts/transitions.py` calls `append_event`: every event is the record of a change made there.
An event holds the account's public fields and a small typed `data`; never a token, code, verifier or
secret (nothing here can reach one: the snapshot is built field by field from the public columns).
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from allegro_link.accounts.models import Account
from allegro_link.db import utcnow, uuid7

# Notified in the appending transaction (delivered on commit): wakes the sequencer and the webhook
# workers of every replica. PostgreSQL folds identical notifications of one transaction into one.
EVENTS_CHANNEL = "allegro_link_events"


class EventType(enum.StrEnum):
    LINKED = "account.linked"
    RELINKED = "account.relinked"
    RELOGIN_REQUIRED = "account.relogin_required"
    RELOGIN_SOON = "account.relogin_soon"
    RELINK_MISMATCH = "account.relink_mismatch"
    IMPORTED = "account.imported"
    DELETED = "account.deleted"


@dataclass(frozen=True, slots=True)
class NewEvent:
    account: Account
    type: EventType
    actor: str
    data: dict[str, Any] = field(default_factory=dict)


def account_snapshot(account: Account) -> dict[str, Any]:
    """The account's public fields (docs/events.md), as right after the event."""
    return {
        "id": str(account.id),
        "owner_id": account.owner_id,
        "allegro_user_id": account.allegro_user_id,
        "login": account.login,
        "status": account.status.value,
        "relogin_reason": account.relogin_reason.value if account.relogin_reason else None,
    }


# One round trip: the events, one outbox row per enabled endpoint that wants each event's type, and the
# wake-up. `ORDER BY n` keeps the identity (the per-account order) in the order the caller gave.
_APPEND = text(
    """
    WITH new_events AS (
        INSERT INTO account_events (event_id, account_id, owner_id, type, account, data, actor, occurred_at)
        SELECT r.event_id, r.account_id, r.owner_id, r.type, r.account, r.data, r.actor, r.occurred_at
        FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) AS (
            event_id uuid, account_id uuid, owner_id text, type text, account jsonb, data jsonb,
            actor text, occurred_at timestamptz
        )) WITH ORDINALITY AS r(event_id, account_id, owner_id, type, account, data, actor, occurred_at, n)
        ORDER BY r.n
        RETURNING id, account_id, type
    ), queued AS (
        INSERT INTO webhook_deliveries (endpoint_id, event_pk, account_id, state, next_attempt_at)
        SELECT endpoint.id, new_events.id, new_events.account_id, 'pending', now()
        FROM new_events JOIN webhook_endpoints AS endpoint
          ON endpoint.enabled
         AND (cardinality(endpoint.event_types) = 0 OR new_events.type = ANY(endpoint.event_types))
        RETURNING 1
    )
    SELECT pg_notify(:channel, '')
    """
)


async def append_events(session: AsyncSession, events: list[NewEvent]) -> list[uuid.UUID]:
    """Append `events` in the caller's transaction (which commits them); returns their ids."""
    if not events:
        return []
    # The ORM may hold pending changes of these accounts; the row lock and insert order need them first.
    await session.flush()
    now = utcnow()
    ids = [uuid7() for _ in events]
    rows = [
        {
            "event_id": str(event_id),
            "account_id": str(event.account.id),
            "owner_id": event.account.owner_id,
            "type": event.type.value,
            "account": account_snapshot(event.account),
            "data": event.data,
            "actor": event.actor,
            "occurred_at": rfc3339(now),
        }
        for event_id, event in zip(ids, events, strict=True)
    ]
    await session.execute(_APPEND, {"rows": json.dumps(rows), "channel": EVENTS_CHANNEL})
    return ids


def rfc3339(moment: datetime) -> str:
    """A UTC moment as the API renders its timestamps: `2026-12-02T04:20:00.123456Z`."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
