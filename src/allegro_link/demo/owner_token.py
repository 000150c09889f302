"""Owner JWTs minted by the service itself, for the demo panel in dev mode only."""

from __future__ import annotations

import time
from dataclasses import dataclass
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


def mint_owner_jwt(settings: Settings, owner_id: str, lifetime_seconds: int = 3600) -> MintedToken:
    """An HS256 owner JWT as the verifier expects it (`iss` and `aud` when those are configured)."""
    if settings.owner_jwt_secret is None:
        raise CannotMint("minting owner JWTs needs ALLEGRO_LINK_OWNER_JWT_SECRET")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": owner_id, "iat": now, "exp": now + lifetime_seconds}
    if settings.owner_jwt_issuer:
        claims["iss"] = settings.owner_jwt_issuer
    if settings.owner_jwt_audience:
        claims["aud"] = settings.owner_jwt_audience
    token = jwt.encode(claims, settings.owner_jwt_secret.get_secret_value(), algorithm="HS256")
    return MintedToken(token=token, expires_at=datetime.fromtimestamp(claims["exp"], UTC))
