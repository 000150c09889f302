"""Appending to the account event log. Every status change and lifecycle step goes through here."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from allegro_link.accounts.models import Account, AccountEvent


class EventKind:
    IMPORTED = "imported"
    LINKED = "linked"
    RELINKED = "relinked"
    REFRESHED = "refreshed"
    STATUS_CHANGED = "status_changed"
    DELETED = "deleted"
    RELINK_MISMATCH = "relink_mismatch"


def record_event(
    session: AsyncSession, account: Account, kind: str, *, actor: str | None = None, **details: Any
) -> AccountEvent:
    """Add an event for `account` to the session; the caller's unit of work commits it.

    `details` must never hold a token, a code or a verifier.
    """
    event = AccountEvent(
        account_id=account.id,
        owner_id=account.owner_id,
        kind=kind,
        status=account.status.value,
        reason=account.relogin_reason.value if account.relogin_reason else None,
        actor=actor,
        details=details,
    )
    session.add(event)
    return event
