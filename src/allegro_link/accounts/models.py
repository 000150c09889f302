"""Linked Allegro accounts and their append-only event log."""

from __future__ import annotations

import enum
import uuid
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
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

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
        CheckConstraint(
            "(status = 'active') = (relogin_reason IS NULL)", name="relogin_reason_iff_relogin_required"
        ),
        CheckConstraint(
            "(access_token_ciphertext IS NULL) = (access_token_expires_at IS NULL)",
            name="access_token_has_expiry",
        ),
    )


class AccountEvent(Base):
    """Append-only history of what happened to an account (status changes, links, deletions).

    Deliberately no foreign key: the log outlives a deleted account.
    """

    __tablename__ = "account_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    owner_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )

    __table_args__ = (Index("ix_account_events_account_id_id", "account_id", "id"),)
