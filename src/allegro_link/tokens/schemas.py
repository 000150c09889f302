"""Token endpoint bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenOut(BaseModel):
    """A currently valid Allegro access token. Never cache it beyond `expires_at`."""

    account_id: uuid.UUID
    allegro_user_id: str | None
    login: str | None
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime
    scope: str | None


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rejected_token: str | None = Field(
        default=None,
        max_length=8192,
        description="the access token Allegro just refused (401); omit to refresh now",
    )
