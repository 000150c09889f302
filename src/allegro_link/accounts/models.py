"""Linked Allegro accounts and their append-only event log."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.instrumentation import manager_of_class

from allegro_link.db import Base, utcnow, uuid7


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    RELOGIN_REQUIRED = "relogin_required"


class ReloginReason(enum.StrEnum):
    LEGACY_ACCOUNT = "legacy_account"
    REFRESH_TOKEN_EXPIRED = "refresh_token_expired"  # noqa: S105 - a reason, not a secret
    GRANT_REVOKED = "grant_revoked"
    REFRESH_REJECTED = "refresh_rejected"


def _enum_values(enum_cls: type[enum.StrEnum]) -> list[str]:
    return [member.value for member in enum_cls]


class Account(Base):
    """One Allegro seller account linked by one owner.

    Tokens are stored only as AES-GCM ciphertexts (see `crypto`); `token_version` counts stored token
    pairs so that concurrent writers and `rejected_token` checks can tell which pair is current.
    """

    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid7)
    owner_id: Mapped[str] = mapped_column(String(200))
    allegro_user_id: Mapped[str | None] = mapped_column(String(64))
    login: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[AccountStatus] = mapped_column(
        Enum(
            AccountStatus,
            name="account_status",
            native_enum=False,
            length=32,
            values_callable=_enum_values,
            validate_strings=True,
            create_constraint=True,
        )
    )
    relogin_reason: Mapped[ReloginReason | None] = mapped_column(
        Enum(
            ReloginReason,
            name="relogin_reason",
            native_enum=False,
            length=32,
            values_callable=_enum_values,
            validate_strings=True,
            create_constraint=True,
        )
    )
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    linked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    access_token_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refresh_token_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scope: Mapped[str | None] = mapped_column(Text)
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Set (committed on its own) before a refresh calls Allegro, cleared by the commit of the new pair:
    # while set, a refresh may have killed the stored access token without its successor being stored.
    refresh_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The token_version a forced refresh produced: only such a pair answers forced refreshes for 10 s.
    forced_token_version: Mapped[int | None] = mapped_column(Integer)

    # Allegro's 90-day use rule (see `accounts.deadline`). NULL: no use known (rows from before it).
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A replica's claim on the keep-alive call for this account, so that no other replica repeats it.
    keepalive_claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The first keep-alive failure since its last success; NULL while the keep-alive works.
    keepalive_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Which `account.relogin_soon` warning was sent (0 none, 1 on entering the window, 2 at 3 days
    # left) and for which deadline; back to 0 once the deadline moves out of the window.
    relogin_warned_stage: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    relogin_warned_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, server_default=func.now()
    )

    __table_args__ = (
        # An owner links an Allegro user once; two owners may each link the same user.
        Index(
            "uq_accounts_owner_id_allegro_user_id",
            "owner_id",
            "allegro_user_id",
            unique=True,
            postgresql_where=text("allegro_user_id IS NOT NULL"),
        ),
        # Legacy (imported, never linked) accounts are known by login only.
        Index(
            "uq_accounts_owner_id_legacy_login",
            "owner_id",
            func.lower(text("login")),
            unique=True,
            postgresql_where=text("allegro_user_id IS NULL"),
        ),
        # Owner listing pages in id order (ids are time-ordered UUIDv7).
        Index("ix_accounts_owner_id_id", "owner_id", "id"),
        Index("ix_accounts_owner_id_lower_login", "owner_id", func.lower(text("login"))),
        # The keep-alive sweep looks for active accounts whose refresh token expires soon.
        Index(
            "ix_accounts_refresh_token_expires_at_active",
            "refresh_token_expires_at",
            postgresql_where=text("status = 'active'"),
        ),
        # The keep-alive's use candidates (least recently used first, never used first) and, with the
        # index above, the accounts whose re-login deadline is near (`accounts.deadline`).
        Index(
            "ix_accounts_last_used_at_active",
            text("last_used_at NULLS FIRST"),
            postgresql_where=text("status = 'active'"),
        ),
        # With the index above, `relogin_required_count` over all owners (a service's unfiltered list).
        Index("ix_accounts_id_relogin_required", "id", postgresql_where=text("status = 'relogin_required'")),
        # Warned accounts, for re-arming once their deadline has moved out of the window.
        Index("ix_accounts_id_relogin_warned", "id", postgresql_where=text("relogin_warned_stage > 0")),
        # The oldest failed keep-alive, for /metrics.
        Index(
            "ix_accounts_keepalive_failed_at",
            "keepalive_failed_at",
            postgresql_where=text("keepalive_failed_at IS NOT NULL"),
        ),
        CheckConstraint(
            "(status = 'active') = (relogin_reason IS NULL)", name="relogin_reason_iff_relogin_required"
        ),
        CheckConstraint(
            "(access_token_ciphertext IS NULL) = (access_token_expires_at IS NULL)",
            name="access_token_has_expiry",
        ),
    )


def detached_account(row: Mapping[Any, Any]) -> Account:
    """An Account filled from a Core row of its columns (keyed by attribute name), detached.

    Made and filled the way the ORM makes a loaded instance (its class manager's `new_instance`, then the
    attribute dict), which skips the constructor's `init` event and per-attribute change tracking and the
    ORM load's identity map: several times cheaper, for rows only read. A column the row lacks is not
    loaded: reading it raises, as on any detached instance.
    """
    account: Account = _ACCOUNT_MANAGER.new_instance()
    account.__dict__.update(row)
    return account


_ACCOUNT_MANAGER = manager_of_class(Account)


class AccountEvent(Base):
    """Append-only history of what happened to an account: the events of docs/events.md.

    Deliberately no foreign key: the log outlives a deleted account. `id` is the insertion order (for
    one account also its commit order, since every change of an account holds its row lock); `seq` is
    the commit order across accounts, assigned after commit by the sequencer (`events/sequencer.py`), so
    that a feed reader paging by `seq` never skips an event that committed late.
    """

    __tablename__ = "account_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    owner_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(64))
    # The account as right after the event (id, owner_id, allegro_user_id, login, status, relogin_reason).
    account: Mapped[dict[str, Any]] = mapped_column(JSONB)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    # Who caused it (owner:…, service:…, token-broker, keepalive, …); kept for support, not served.
    actor: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )

    __table_args__ = (
        Index("ix_account_events_account_id_id", "account_id", "id"),
        Index("uq_account_events_seq", "seq", unique=True, postgresql_where=text("seq IS NOT NULL")),
        # The sequencer's work list: committed events still waiting for their place in the feed.
        Index("ix_account_events_unsequenced", "id", postgresql_where=text("seq IS NULL")),
        Index("ix_account_events_occurred_at", "occurred_at"),
    )
