"""The fake's records: users, codes, token sessions and tokens, and the errors the store raises.

A *token session* is what Allegro counts as one "active session": the pair minted by one code
exchange and every pair rotated from it. It holds at most one live access token, because a refresh
kills the previous one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

ExpireWhat = Literal["access", "refresh", "both"]


class InvalidGrant(Exception):
    """400 invalid_grant. The description may echo the token or code, as Allegro's does."""

    def __init__(self, description: str) -> None:
        super().__init__("invalid_grant")
        self.description = description


class Unauthorized(Exception):
    """401 Unauthorized: the user removed the app, or a public client presented a code without PKCE."""


class UserConflict(Exception):
    pass


@dataclass(slots=True)
class User:
    id: str
    login: str
    email: str
    first_name: str = "Jan"
    last_name: str = "Kowalski"
    company_name: str | None = None
    company_tax_id: str | None = None
    features: list[str] = field(default_factory=list)

    def as_me(self) -> dict[str, object]:
        """The body of GET /me (docs/allegro.md)."""
        return {
            "id": self.id,
            "login": self.login,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "email": self.email,
            "baseMarketplace": {"id": "allegro-pl"},
            "company": {"name": self.company_name, "taxId": self.company_tax_id},
            "features": list(self.features),
        }


@dataclass(slots=True)
class AuthCode:
    client_id: str
    redirect_uri: str
    user_id: str
    scopes: tuple[str, ...]
    code_challenge: str | None
    expires_at: float
    used: bool = False
    session_id: int | None = None


@dataclass(slots=True)
class TokenSession:
    id: int
    user_id: str
    client_id: str
    scopes: tuple[str, ...]
    current_access_jti: str = ""
    access_jtis: list[str] = field(default_factory=list)
    refresh_jtis: list[str] = field(default_factory=list)
    # Killed: over the 20-session cap, or its code was replayed. Revoked: the user removed the app.
    killed: bool = False
    revoked: bool = False

    @property
    def dead(self) -> bool:
        return self.killed or self.revoked


@dataclass(slots=True)
class AccessRecord:
    session_id: int
    expires_at: float
    sequence: int  # minting order, for "the 21st kills the 1st" even when the clock stands still
    killed: bool = False


@dataclass(slots=True)
class RefreshRecord:
    session_id: int
    expires_at: float
    first_used_at: float | None = None


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    jti: str
    scopes: tuple[str, ...]
    expires_in: int


@dataclass(frozen=True, slots=True)
class AccessCheck:
    outcome: Literal["ok", "malformed", "invalid", "expired"]
    user: User | None = None
    scopes: tuple[str, ...] = ()


@dataclass(slots=True)
class Stats:
    token_calls: Counter[str] = field(default_factory=Counter)
    me_calls: int = 0
    refresh_by_user: Counter[str] = field(default_factory=Counter)
    # Successful GET /me answers per login: the calls that count as use under the 90-day rule.
    me_by_user: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, object]:
        return {
            "token_calls": {
                "authorization_code": self.token_calls["authorization_code"],
                "refresh_token": self.token_calls["refresh_token"],
                "total": self.token_calls.total(),
            },
            "me_calls": self.me_calls,
            "refresh_by_user": dict(self.refresh_by_user),
            "me_by_user": dict(self.me_by_user),
        }
