"""Every change of an account's status or lifecycle, each a named function (docs/events.md).

Each function changes the row and appends its event (which queues the event's webhook deliveries) in
the caller's transaction, so the change, the event and the deliveries commit or roll back together.
Nothing else in the code base sets `Account.status`. Callers hold the account's row lock (they read it
`FOR UPDATE`), which is also what makes one account's events commit in the order they were appended.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from allegro_link.accounts.events import EventType, NewEvent, append_events, rfc3339
from allegro_link.accounts.models import Account, AccountStatus, ReloginReason
from allegro_link.accounts.status import effective_status
from allegro_link.db import utcnow


def new_linked_account(*, account_id: uuid.UUID, owner_id: str, now: datetime) -> Account:
    """A not yet stored account for a first link; `linked` stores it once its tokens are in place."""
    return Account(
        id=account_id,
        owner_id=owner_id,
        status=AccountStatus.ACTIVE,
        relogin_reason=None,
        status_changed_at=now,
        linked_at=now,
    )


async def linked(session: AsyncSession, account: Account, *, actor: str) -> None:
    """`/oauth/complete` created the account (built by `new_linked_account`, tokens set)."""
    session.add(account)
    await append_events(session, [NewEvent(account, EventType.LINKED, actor)])


def relink_starting(account: Account, now: datetime) -> dict[str, Any]:
    """The status a re-login changes from, read before the new tokens replace the old ones."""
    before = effective_status(account, now)
    return {
        "previous_status": before.status.value,
        "previous_reason": before.reason.value if before.reason else None,
    }


async def relinked(
    session: AsyncSession, account: Account, previous: dict[str, Any], *, now: datetime, actor: str
) -> None:
    """A re-login (or a new link of a known user or legacy login) stored fresh tokens: active again."""
    # Also for an account that was active: it may have read as refresh_token_expired, and a re-login
    # is a status change either way.
    account.status = AccountStatus.ACTIVE
    account.relogin_reason = None
    account.status_changed_at = now
    await append_events(session, [NewEvent(account, EventType.RELINKED, actor, dict(previous))])


async def relogin_required(
    session: AsyncSession,
    account: Account,
    reason: ReloginReason,
    *,
    actor: str,
    changed_at: datetime | None = None,
) -> None:
    """Allegro refused the account's refresh, or its refresh token expired: it needs a re-login.

    `changed_at` is the expiry for an expired refresh token (the documented Account: its status changed then).
    """
    account.status = AccountStatus.RELOGIN_REQUIRED
    account.relogin_reason = reason
    account.status_changed_at = changed_at or utcnow()
    await append_events(
        session, [NewEvent(account, EventType.RELOGIN_REQUIRED, actor, {"reason": reason.value})]
    )


async def relogin_soon(
    session: AsyncSession, account: Account, *, deadline: datetime, days_left: int, actor: str
) -> None:
    """An active account's re-login deadline came within the warning window (or to 3 days left).

    The status does not change: the event warns that it will (`accounts.warnings` decides when).
    """
    data = {"relogin_deadline": rfc3339(deadline), "days_left": days_left}
    await append_events(session, [NewEvent(account, EventType.RELOGIN_SOON, actor, data)])


async def relink_mismatch(session: AsyncSession, account: Account, *, actual_login: str, actor: str) -> None:
    """A re-login of `account` was done as another Allegro user; the account itself is unchanged."""
    data = {"expected_login": account.login, "actual_login": actual_login}
    await append_events(session, [NewEvent(account, EventType.RELINK_MISMATCH, actor, data)])


def legacy_account_row(*, account_id: uuid.UUID, owner_id: str, login: str, now: datetime) -> dict[str, Any]:
    """The row of an imported legacy account (inserted in bulk by the importer), known by login only."""
    return {
        "id": account_id,
        "owner_id": owner_id,
        "login": login,
        "allegro_user_id": None,
        "status": AccountStatus.RELOGIN_REQUIRED,
        "relogin_reason": ReloginReason.LEGACY_ACCOUNT,
        "status_changed_at": now,
        "created_at": now,
        "updated_at": now,
    }


async def imported(session: AsyncSession, rows: list[dict[str, Any]], *, actor: str) -> None:
    """The legacy import inserted these rows (made by `legacy_account_row`); one statement for all."""
    public = ("id", "owner_id", "login", "allegro_user_id", "status", "relogin_reason")
    accounts = [Account(**{name: row[name] for name in public}) for row in rows]
    await append_events(session, [NewEvent(account, EventType.IMPORTED, actor) for account in accounts])


async def deleted(session: AsyncSession, account: Account, *, actor: str) -> None:
    """The owner disconnected the account; the caller deletes the row (and with it the tokens) next.

    The event's account is as the owner last saw it: the row is gone right after.
    """
    await append_events(session, [NewEvent(account, EventType.DELETED, actor)])
