"""Link sessions: the server-side half of one authorization-code flow."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, LargeBinary, String, Text, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from allegro_link.db import Base, utcnow, uuid7


class LinkSession(Base):
    """One attempt to link (or re-login) an Allegro account, from `authorize` to `complete`.

    The browser only ever holds the `state` and, after the callback, the opaque `link_session` id;
    both are stored here as SHA-256 hashes, so a database reader cannot replay them. Everything
    secret (PKCE verifier, the tokens Allegro returned) is encrypted and bound to this row.
    """

    __tablename__ = "link_sessions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid7)
    state_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    owner_id: Mapped[str] = mapped_column(String(200))
    # Set for a re-login: the flow may only complete into this account.
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    return_to: Mapped[str] = mapped_column(Text)
    code_verifier_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    # Filled by the callback.
    callback_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(32))
    completion_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    completion_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    allegro_user_id: Mapped[str | None] = mapped_column(String(64))
    login: Mapped[str | None] = mapped_column(String(200))
    access_token_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refresh_token_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scope: Mapped[str | None] = mapped_column(Text)

    # Filled by /oauth/complete (or when the session is destroyed for a foreign owner).
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_link_sessions_expires_at", "expires_at"),
        # The per-owner cap on pending states (flow.start_link) reads an owner's newest first.
        Index("ix_link_sessions_owner_id_created_at", "owner_id", "created_at"),
    )
