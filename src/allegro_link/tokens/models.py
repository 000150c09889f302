"""The record of every access token handed out (who, which account, when; never the token)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Identity, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from allegro_link.db import Base


class TokenIssue(Base):
    __tablename__ = "token_issues"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    api_key_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    api_key_name: Mapped[str] = mapped_column(String(100))
    token_version: Mapped[int] = mapped_column(Integer)
    refreshed: Mapped[bool] = mapped_column(Boolean)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_token_issues_account_id_issued_at", "account_id", "issued_at"),)
