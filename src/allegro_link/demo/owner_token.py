"""Owner JWTs minted by the service itself: a capability that only `allegro-link dev` hands out.

Whoever can mint owner JWTs can act as any owner on every replica that shares the secret, so no
setting or environment variable turns this on. `allegro-link dev` builds a minter from its own
generated secret and passes it to `create_app`; `serve` never does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt

from allegro_link.settings import Settings


class CannotMint(Exception):
    """Owner JWTs are verified with a JWKS here: only the identity provider can issue them."""


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OwnerTokenMinter:
    """Issues HS256 owner JWTs as the verifier configured by the same settings expects them."""

    secret: str = field(repr=False)
    issuer: str | None = None
    audience: str | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> OwnerTokenMinter:
        if settings.owner_jwt_secret is None:
            raise CannotMint("minting owner JWTs needs ALLEGRO_LINK_OWNER_JWT_SECRET")
        return cls(
            secret=settings.owner_jwt_secret.get_secret_value(),
            issuer=settings.owner_jwt_issuer,
            audience=settings.owner_jwt_audience,
        )

    def mint(self, owner_id: str, lifetime_seconds: int = 3600) -> MintedToken:
        now = int(time.time())
        claims: dict[str, Any] = {"sub": owner_id, "iat": now, "exp": now + lifetime_seconds}
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return MintedToken(token=token, expires_at=datetime.fromtimestamp(claims["exp"], UTC))
