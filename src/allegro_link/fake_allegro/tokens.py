"""JWT minting and reading for the fake, shaped like Allegro's tokens (docs/allegro.md).

The signature only proves a token came from this fake instance; whether it is still valid (rotated,
revoked, expired on the fake's clock) is decided by the store, as on the real server.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

ALGORITHM = "RS256"


def generate_signing_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True, slots=True)
class Minted:
    jti: str
    token: str


class TokenSigner:
    def __init__(self, key: RSAPrivateKey, issuer: str) -> None:
        self._key = key
        self._public_key = key.public_key()
        self._issuer = issuer

    def access_token(
        self, *, user_id: str, client_id: str, scopes: Sequence[str], expires_at: float
    ) -> Minted:
        jti = str(uuid.uuid4())
        claims: dict[str, Any] = {
            "user_name": user_id,
            "scope": list(scopes),
            "allegro_api": True,
            "iss": self._issuer,
            "exp": int(expires_at),
            "jti": jti,
            "client_id": client_id,
        }
        return Minted(jti=jti, token=jwt.encode(claims, self._key, algorithm=ALGORITHM))

    def refresh_token(
        self, *, user_id: str, client_id: str, scopes: Sequence[str], expires_at: float, access_jti: str
    ) -> Minted:
        jti = str(uuid.uuid4())
        claims: dict[str, Any] = {
            "user_name": user_id,
            "scope": list(scopes),
            "allegro_api": True,
            "ati": access_jti,
            "iss": self._issuer,
            "exp": int(expires_at),
            "jti": jti,
            "client_id": client_id,
        }
        return Minted(jti=jti, token=jwt.encode(claims, self._key, algorithm=ALGORITHM))

    def jti_of(self, token: str) -> str | None:
        """The `jti` of a token this instance signed, or None for anything else (forged, foreign, garbage).

        `exp` is not checked here: expiry follows the fake's clock, which tests move independently
        of the wall clock that pyjwt would use.
        """
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                options={"verify_exp": False, "require": ["jti"]},
            )
        except jwt.PyJWTError:
            return None
        jti = claims.get("jti")
        return jti if isinstance(jti, str) else None
