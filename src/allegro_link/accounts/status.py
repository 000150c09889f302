"""An account's status as of now.

The stored status changes when something happens (a refresh fails, a re-login succeeds). Time also
changes it: a refresh token past its `exp` is dead even if nothing has run since, so reads compute
the effective status, in Python for one account and in SQL for filters and counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_

from allegro_link.accounts.models import Account, AccountStatus, ReloginReason


@dataclass(frozen=True, slots=True)
class EffectiveStatus:
    account: Account
    status: AccountStatus
    reason: ReloginReason | None
    status_changed_at: datetime
    computed_at: datetime


def effective_status(account: Account, now: datetime) -> EffectiveStatus:
    status, reason, changed_at = current_status(
        account.status,
        account.relogin_reason,
        account.status_changed_at,
        account.refresh_token_expires_at,
        now,
    )
    return EffectiveStatus(account, status, reason, changed_at, now)


def current_status(
    status: AccountStatus,
    reason: ReloginReason | None,
    changed_at: datetime,
    refresh_expires_at: datetime | None,
    now: datetime,
) -> tuple[AccountStatus, ReloginReason | None, datetime]:
    """`effective_status` over a row's plain values (status, reason, since when), for list pages."""
    if status is AccountStatus.ACTIVE and refresh_expires_at is not None and refresh_expires_at <= now:
        return AccountStatus.RELOGIN_REQUIRED, ReloginReason.REFRESH_TOKEN_EXPIRED, refresh_expires_at
    return status, reason, changed_at


def sql_needs_relogin() -> ColumnElement[bool]:
    expired = and_(
        Account.status == AccountStatus.ACTIVE,
        Account.refresh_token_expires_at.is_not(None),
        Account.refresh_token_expires_at <= func.now(),
    )
    return or_(Account.status == AccountStatus.RELOGIN_REQUIRED, expired)
