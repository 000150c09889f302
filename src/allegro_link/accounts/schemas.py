"""The Account JSON object (docs/api.md) and list pages."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import Depends, Request
from pydantic import BaseModel, Field

from allegro_link.accounts.deadline import relogin_deadline
from allegro_link.accounts.status import EffectiveStatus
from allegro_link.resources import resources


def soon_window(request: Request) -> timedelta:
    """`ALLEGRO_LINK_RELOGIN_SOON_DAYS` of the app serving `request`."""
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
            relogin_soon=deadline is not None and deadline - now <= soon_window,
        )


class AccountPage(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")
    relogin_required_count: int = Field(
        description="accounts needing a re-login among all the owner's accounts, whatever the filters"
    )
    relogin_soon_count: int = Field(
        description="active accounts whose re-login deadline is near, counted like relogin_required_count"
    )
