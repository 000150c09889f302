"""Owner authentication: a Bearer JWT from Polkurier's identity provider; `sub` is the owner id.

Verified with an HS256 secret or with keys from a JWKS URL (RS256/ES256). `exp` is required and must
be a number (PyJWT alone would take `"exp": "99999999999"`), `iss` and `aud` are checked when configured,
and with a maximum age set a token must carry an `iat` no older than that. The JWKS is cached and
fetched again when a token names a key id we have not seen (key rollover), at most once per
`JWKS_REFETCH_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import structlog

from allegro_link.errors import Unauthenticated
from allegro_link.settings import Settings

JWKS_CACHE_SECONDS = 600.0
JWKS_REFETCH_INTERVAL = 30.0
CLOCK_LEEWAY_SECONDS = 30
MAX_OWNER_ID_LENGTH = 200
TIME_CLAIMS = ("exp", "iat", "nbf")
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OwnerPrincipal:
    owner_id: str


class OwnerTokenVerifier:
    def __init__(
        self, settings: Settings, http: httpx.AsyncClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._secret = settings.owner_jwt_secret.get_secret_value() if settings.owner_jwt_secret else None
        self._jwks_url = settings.owner_jwt_jwks_url
        self._issuer = settings.owner_jwt_issuer
        self._audience = settings.owner_jwt_audience
        self._max_age = settings.owner_jwt_max_age_seconds
        self._http = http
        self._clock = clock
        self._jwks: dict[str, jwt.PyJWK] = {}
        self._jwks_fetched_at = float("-inf")
        self._last_attempt = float("-inf")
        self._jwks_lock = asyncio.Lock()
        if self._issuer is None and self._audience is None:
            # Any token the key signs is then accepted, including ones minted for other services by
            # the same identity provider.
            log.warning(
                "auth.owner.unscoped",
                detail="neither ALLEGRO_LINK_OWNER_JWT_ISSUER nor ALLEGRO_LINK_OWNER_JWT_AUDIENCE is set",
            )

    async def verify(self, token: str) -> OwnerPrincipal:
        try:
            if self._secret is not None:
                key: Any = self._secret
                algorithms = ["HS256"]
            else:
                signing_key = await self._signing_key(token)
                key, algorithms = signing_key.key, [signing_key.algorithm_name]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=CLOCK_LEEWAY_SECONDS,
                options={
                    "require": ["exp", "sub", "iat"] if self._max_age is not None else ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                },
            )
            self._check_times(claims)
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("The token has expired.") from None
        except jwt.PyJWTError as exc:
            log.info("auth.owner.rejected", reason=type(exc).__name__)
            raise Unauthenticated("The token is not valid.") from None
        owner_id = claims.get("sub")
        if not _valid_owner_id(owner_id):
            raise Unauthenticated("The token's subject is not a valid owner id.")
        assert isinstance(owner_id, str)  # noqa: S101 - narrowed by _valid_owner_id
        return OwnerPrincipal(owner_id=owner_id)

    def _check_times(self, claims: dict[str, Any]) -> None:
        # PyJWT runs int() on these, so "99999999999" or true pass its own checks.
        for name in TIME_CLAIMS:
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise jwt.InvalidTokenError(f"{name} is not a number")
        if self._max_age is not None and time.time() - claims["iat"] > self._max_age + CLOCK_LEEWAY_SECONDS:
            raise jwt.ExpiredSignatureError("issued too long ago")

    async def _signing_key(self, token: str) -> jwt.PyJWK:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise jwt.InvalidAlgorithmError("algorithm not allowed")
        kid = header.get("kid")
        key = await self._find_key(kid)
        if key is None:
            raise jwt.InvalidKeyError("unknown key id")
        if key.algorithm_name != algorithm:
            raise jwt.InvalidAlgorithmError("algorithm does not match the key")
        return key

    async def _find_key(self, kid: Any) -> jwt.PyJWK | None:
        now = self._clock()
        fresh = now - self._jwks_fetched_at <= JWKS_CACHE_SECONDS
        key = self._lookup(kid) if fresh else None
        if key is None and now - self._last_attempt >= JWKS_REFETCH_INTERVAL:
            await self._refresh_jwks(now)
        # After a failed fetch the previous keys still serve: an IdP blip must not log everyone out.
        return key or self._lookup(kid)

    def _lookup(self, kid: Any) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._jwks.values())) if len(self._jwks) == 1 else None
        return self._jwks.get(str(kid))

    async def _refresh_jwks(self, now: float) -> None:
        async with self._jwks_lock:
            if now - self._last_attempt < JWKS_REFETCH_INTERVAL:
                return  # another request refreshed while this one waited for the lock
            self._last_attempt = now
            assert self._jwks_url is not None  # noqa: S101 - settings require one key source
            try:
                response = await self._http.get(self._jwks_url, timeout=5.0)
                response.raise_for_status()
                key_set = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                log.warning("auth.jwks.fetch_failed", error=type(exc).__name__)
                return  # keep the keys we have; try again after the refetch interval
            self._jwks = {
                str(key.key_id) if key.key_id else f"#{index}": key
                for index, key in enumerate(key_set.keys)
                if key.algorithm_name in ASYMMETRIC_ALGORITHMS
            }
            self._jwks_fetched_at = now


def _valid_owner_id(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_OWNER_ID_LENGTH
        and value.isprintable()
        and value == value.strip()
    )
