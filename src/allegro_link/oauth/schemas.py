"""Request and response bodies of the link flow."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from allegro_link.accounts.schemas import AccountOut
from allegro_link.oauth.flow import LinkResult, StartedLink


class AuthorizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    return_to: str = Field(
        min_length=1, max_length=2048, description="where the browser returns; must match the allowlist"
    )


class AuthorizeResponse(BaseModel):
    authorization_url: str = Field(description="send the browser here (Allegro's login and consent page)")
    expires_at: datetime = Field(description="when the state expires")

    @classmethod
    def build(cls, started: StartedLink) -> AuthorizeResponse:
        return cls(authorization_url=started.authorization_url, expires_at=started.expires_at)


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    link_session: str = Field(min_length=1, max_length=128, description="from the return_to query string")


class CompleteResponse(BaseModel):
    result: LinkResult
    account: AccountOut


class AccountMismatchProblem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: Literal["account_mismatch"]
    expected_login: str | None
    actual_login: str
