"""The Event JSON object (docs/events.md): the same in the feed, the history and every webhook."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from allegro_link.accounts.models import AccountEvent
from allegro_link.accounts.schemas import PublicAccount

EventTypeWord = Literal[
    "account.linked",
    "account.relinked",
    "account.relogin_required",
    "account.relogin_soon",
    "account.relink_mismatch",
    "account.imported",
    "account.deleted",
]


class EventAccount(PublicAccount):
    """The account as right after the event."""


class EventOut(BaseModel):
    """Something that happened to an account. Never carries a token, code, verifier or secret."""

    id: str = Field(description="unique and opaque; the `webhook-id` of its webhook deliveries")
    type: EventTypeWord
    occurred_at: datetime
    account: EventAccount
    data: dict[str, Any] = Field(description="by type, see docs/events.md")

    @classmethod
    def build(cls, event: AccountEvent) -> EventOut:
        return cls(
            id=str(event.event_id),
            type=event.type,  # written only from EventType
            occurred_at=event.occurred_at,
            account=EventAccount.model_validate(event.account),
            data=event.data,
        )


class EventFeedPage(BaseModel):
    items: list[EventOut]
    next_cursor: str = Field(description="pass as `after` next time; present also after an empty page")


class EventHistoryPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = Field(description="pass as `cursor` for older events; null on the last page")
