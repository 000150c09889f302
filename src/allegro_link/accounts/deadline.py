"""The re-login deadline: when an active account will need its owner to log it in again.

Two clocks run out for an account: its refresh token's own expiry, and Allegro's
use rule, which withdraws an application's access to an account it has not used for more than 90 days.
Whether a refresh counts as use is not documented, so only a real API call does (`last_used_at`). The
deadline is the earlier of the two; an account is `relogin_soon` once its deadline is inside the
warning window. Computed in Python for one account and in SQL (over indexed columns) for lists.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_

from allegro_link.accounts.models import Account, AccountStatus
from allegro_link.accounts.status import effective_status

USE_RULE = timedelta(days=90)
# The second warning: few enough days left that someone should act now.
LAST_WARNING_DAYS = 3


def relogin_deadline(account: Account, now: datetime) -> datetime | None:
    """The earlier of the refresh token's expiry and the last use + 90 days; None unless active."""
    if effective_status(account, now).status is not AccountStatus.ACTIVE:
        return None
    return active_deadline(account.refresh_token_expires_at, account.last_used_at)


def active_deadline(refresh_expires_at: datetime | None, last_used_at: datetime | None) -> datetime | None:
    """`relogin_deadline` of an account known to be active, from its row's two plain values."""
    if last_used_at is None:
        return refresh_expires_at
    by_use = last_used_at + USE_RULE
    return by_use if refresh_expires_at is None or by_use < refresh_expires_at else refresh_expires_at


def relogin_soon(account: Account, now: datetime, window: timedelta) -> bool:
    return is_soon(relogin_deadline(account, now), now, window)


def is_soon(deadline: datetime | None, now: datetime, window: timedelta) -> bool:
    """`relogin_soon` for an account with this deadline (None: not active, never soon)."""
    return deadline is not None and deadline - now <= window


def days_left(deadline: datetime, now: datetime) -> int:
    """Whole days to the deadline, rounded up: "za 1 dzień" until the last moment, never negative."""
    return max(0, math.ceil((deadline - now) / timedelta(days=1)))


def warning_stage(deadline: datetime, now: datetime, window: timedelta) -> int:
    """Which warning an account with this deadline should have had: 0 none, 1 in the window, 2 at 3 days."""
    left = deadline - now
    if left <= timedelta(days=LAST_WARNING_DAYS):
        return 2
    return 1 if left <= window else 0


def sql_relogin_deadline() -> ColumnElement[datetime]:
    # least() skips NULLs, as `relogin_deadline` skips an unknown last use.
    return func.least(Account.refresh_token_expires_at, Account.last_used_at + USE_RULE)


def sql_relogin_soon(window: timedelta | ColumnElement[timedelta]) -> ColumnElement[bool]:
    """Active, alive, and one of the two clocks runs out within `window` (a value, or a bound parameter
    so that a statement built once serves every window).

    Written as an OR over the two columns (not over `least(...)`) so that each side is a range on its
    own partial index (`status = 'active'`): a BitmapOr of two index scans at any table size.
    """
    return and_(
        Account.status == AccountStatus.ACTIVE,
        or_(Account.refresh_token_expires_at.is_(None), Account.refresh_token_expires_at > func.now()),
        or_(
            Account.refresh_token_expires_at <= func.now() + window,
            Account.last_used_at <= func.now() + (window - USE_RULE),
        ),
    )
