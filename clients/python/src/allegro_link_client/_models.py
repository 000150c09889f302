"""What allegro-link answers (tokens, accounts, events), as small frozen types built from its JSON."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Account ids are UUIDs; their string form is accepted wherever one is asked for.
AccountId = uuid.UUID | str


def as_uuid(value: AccountId) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


@dataclass(frozen=True, slots=True)
class Token:
    """A valid Allegro access token of one account. Its `repr` and `str` never show the token itself."""

    account_id: uuid.UUID
    allegro_user_id: str | None
    login: str | None
    # repr=False keeps it out of reprs, tracebacks with locals, and f"{token}" in a log line.
    access_token: str = field(repr=False)
    expires_at: datetime
    scope: str | None
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret

    def valid_for(self, now: datetime | None = None) -> float:
        """Seconds left until `expires_at` (negative once expired)."""
        return (self.expires_at - (now or datetime.now(UTC))).total_seconds()

    @property
    def authorization(self) -> str:
        """The `Authorization` header value for Allegro."""
        return f"Bearer {self.access_token}"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Token:
        return cls(
            account_id=uuid.UUID(body["account_id"]),
            allegro_user_id=body.get("allegro_user_id"),
            login=body.get("login"),
            access_token=body["access_token"],
            expires_at=_datetime(body["expires_at"]),
            scope=body.get("scope"),
            token_type=body.get("token_type", "bearer"),
        )


@dataclass(frozen=True, slots=True)
class Account:
    """An Allegro account as allegro-link sees it; `status` is true at the moment of the answer."""

    id: uuid.UUID
    owner_id: str
    allegro_user_id: str | None
    login: str | None
    status: str  # "active" | "relogin_required"
    relogin_reason: str | None
    status_changed_at: datetime
    linked_at: datetime | None
    last_refreshed_at: datetime | None
    access_token_expires_at: datetime | None
    refresh_token_expires_at: datetime | None
    # Section 8 fields: None until the service sends them.
    last_used_at: datetime | None = None
    relogin_deadline: datetime | None = None
    relogin_soon: bool | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Account:
        return cls(
            id=uuid.UUID(body["id"]),
            owner_id=body["owner_id"],
            allegro_user_id=body.get("allegro_user_id"),
            login=body.get("login"),
            status=body["status"],
            relogin_reason=body.get("relogin_reason"),
            status_changed_at=_datetime(body["status_changed_at"]),
            linked_at=_optional_datetime(body.get("linked_at")),
            last_refreshed_at=_optional_datetime(body.get("last_refreshed_at")),
            access_token_expires_at=_optional_datetime(body.get("access_token_expires_at")),
            refresh_token_expires_at=_optional_datetime(body.get("refresh_token_expires_at")),
            last_used_at=_optional_datetime(body.get("last_used_at")),
            relogin_deadline=_optional_datetime(body.get("relogin_deadline")),
            relogin_soon=body.get("relogin_soon"),
        )


@dataclass(frozen=True, slots=True)
class EventAccount:
    """The account as it was right after the event."""

    id: uuid.UUID
    owner_id: str
    allegro_user_id: str | None
    login: str | None
    status: str
    relogin_reason: str | None


@dataclass(frozen=True, slots=True)
class Event:
    """One change of an account (`account.linked`, `account.relogin_required`, …); never carries a token."""

    id: str
    type: str
    occurred_at: datetime
    account: EventAccount
    data: Mapping[str, Any]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Event:
        account = body["account"]
        return cls(
            id=body["id"],
            type=body["type"],
            occurred_at=_datetime(body["occurred_at"]),
            account=EventAccount(
                id=uuid.UUID(account["id"]),
                owner_id=account["owner_id"],
                allegro_user_id=account.get("allegro_user_id"),
                login=account.get("login"),
                status=account["status"],
                relogin_reason=account.get("relogin_reason"),
            ),
            data=dict(body.get("data") or {}),
        )


@dataclass(frozen=True, slots=True)
class AccountPage:
    items: list[Account]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class EventPage:
    items: list[Event]
    next_cursor: str  # always present: where to go on from, also after an empty page


def _datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    # The contract promises a time zone; a naive value is read as UTC rather than as local time.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _optional_datetime(value: str | None) -> datetime | None:
    return None if value is None else _datetime(value)
