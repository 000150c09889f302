"""The Account JSON object (docs/api.md) and list pages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from pydantic import BaseModel, Field

from allegro_link.accounts.deadline import active_deadline, is_soon, relogin_deadline
from allegro_link.accounts.models import AccountStatus
from allegro_link.accounts.status import EffectiveStatus, current_status
from allegro_link.resources import resources


async def soon_window(request: Request) -> timedelta:
    """`ALLEGRO_LINK_RELOGIN_SOON_DAYS` of the app serving `request`.

    `async` though it awaits nothing: FastAPI runs a plain `def` dependency in its thread pool, a
    thread hop on every request.
    """
    return resources(request).settings.relogin_soon_window


SoonWindow = Annotated[timedelta, Depends(soon_window)]


StatusWord = Literal["active", "relogin_required"]
ReasonWord = Literal["legacy_account", "refresh_token_expired", "grant_revoked", "refresh_rejected"]


class PublicAccount(BaseModel):
    """An account's identity and status: the head of the Account object and every event's `account`."""

    id: uuid.UUID
    owner_id: str
    allegro_user_id: str | None
    login: str | None
    status: StatusWord
    relogin_reason: ReasonWord | None


class AccountOut(PublicAccount):
    """An Allegro account linked by an owner. `status` is true at the moment of the response."""

    status_changed_at: datetime
    linked_at: datetime | None
    last_refreshed_at: datetime | None
    access_token_expires_at: datetime | None
    refresh_token_expires_at: datetime | None
    last_used_at: datetime | None = Field(
        description="last time allegro-link knows the account was used at Allegro (a token handed out, "
        "or a call of its own); null when unknown"
    )
    relogin_deadline: datetime | None = Field(
        description="active accounts: the earlier of the refresh token's expiry and the last use + 90 days"
    )
    relogin_soon: bool = Field(description="active and the re-login deadline is within the warning window")

    @classmethod
    def build(cls, view: EffectiveStatus, *, soon_window: timedelta) -> AccountOut:
        account = view.account
        # The moment the status was computed at, so that the status and the deadline agree.
        now = view.computed_at
        deadline = relogin_deadline(account, now)
        # Every value comes typed from the row and the status computation: built without validating
        # them again (a list page builds up to 200 of these).
        return cls.model_construct(
            id=account.id,
            owner_id=account.owner_id,
            allegro_user_id=account.allegro_user_id,
            login=account.login,
            status=view.status.value,
            relogin_reason=view.reason.value if view.reason else None,
            status_changed_at=view.status_changed_at,
            linked_at=account.linked_at,
            last_refreshed_at=account.last_refreshed_at,
            access_token_expires_at=account.access_token_expires_at,
            refresh_token_expires_at=account.refresh_token_expires_at,
            last_used_at=account.last_used_at,
            relogin_deadline=deadline,
            relogin_soon=is_soon(deadline, now, soon_window),
        )


# The columns a list page reads of each account, in the order `listed_account` unpacks them.
LISTED_COLUMNS = (
    "id",
    "owner_id",
    "allegro_user_id",
    "login",
    "status",
    "relogin_reason",
    "status_changed_at",
    "linked_at",
    "last_refreshed_at",
    "access_token_expires_at",
    "refresh_token_expires_at",
    "last_used_at",
)


def listed_account(row: Sequence[Any], now: datetime, soon_window: timedelta) -> dict[str, Any]:
    """`AccountOut` of a list page's row (`LISTED_COLUMNS` first) as plain values, for orjson to write.

    A page has up to 200 of these: a model each (even unvalidated), an Account each and the status
    helpers' objects were most of the list's cost. Same values as `AccountOut.build`, from the same
    rules (`current_status`, `active_deadline`, `is_soon`), in its field order; tests/accounts
    compares the two.
    """
    # By position: a Row's attribute access costs about as much as the rest of this function.
    (
        account_id,
        owner_id,
        allegro_user_id,
        login,
        stored_status,
        stored_reason,
        stored_status_changed_at,
        linked_at,
        last_refreshed_at,
        access_token_expires_at,
        refresh_token_expires_at,
        last_used_at,
    ) = row[: len(LISTED_COLUMNS)]
    status, reason, status_changed_at = current_status(
        stored_status, stored_reason, stored_status_changed_at, refresh_token_expires_at, now
    )
    deadline = (
        active_deadline(refresh_token_expires_at, last_used_at) if status is AccountStatus.ACTIVE else None
    )
    return {
        "id": str(account_id),  # asyncpg's own UUID type, which orjson does not write
        "owner_id": owner_id,
        "allegro_user_id": allegro_user_id,
        "login": login,
        "status": status.value,
        "relogin_reason": reason.value if reason is not None else None,
        "status_changed_at": status_changed_at,
        "linked_at": linked_at,
        "last_refreshed_at": last_refreshed_at,
        "access_token_expires_at": access_token_expires_at,
        "refresh_token_expires_at": refresh_token_expires_at,
        "last_used_at": last_used_at,
        "relogin_deadline": deadline,
        "relogin_soon": is_soon(deadline, now, soon_window),
    }


class AccountPage(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")
    relogin_required_count: int = Field(
        description="accounts needing a re-login among all the owner's accounts, whatever the filters"
    )
    relogin_soon_count: int = Field(
        description="active accounts whose re-login deadline is near, counted like relogin_required_count"
    )
