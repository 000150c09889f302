"""The Account JSON object (docs/api.md) and list pages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from allegro_link.accounts.status import EffectiveStatus

StatusWord = Literal["active", "relogin_required"]
ReasonWord = Literal["legacy_account", "refresh_token_expired", "grant_revoked", "refresh_rejected"]


class AccountOut(BaseModel):
    """An Allegro account linked by an owner. `status` is true at the moment of the response."""

    id: uuid.UUID
    owner_id: str
    allegro_user_id: str | None
    login: str | None
    status: StatusWord
    relogin_reason: ReasonWord | None
    status_changed_at: datetime
    linked_at: datetime | None
    last_refreshed_at: datetime | None
    access_token_expires_at: datetime | None
    refresh_token_expires_at: datetime | None

    @classmethod
    def build(cls, view: EffectiveStatus) -> AccountOut:
        account = view.account
        return cls(
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
        )


class AccountPage(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")
    relogin_required_count: int = Field(
        description="accounts needing a re-login among all the owner's accounts, whatever the filters"
    )
