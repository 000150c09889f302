"""Configuration of the fake Allegro: registered clients, lifetimes, clock, test controls."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

# Every scope an Allegro app can declare (docs/allegro.md), plus `allegro:api:ads`, which real
# tokens carry although the tutorial does not list it.
ALL_SCOPES: tuple[str, ...] = (
    "allegro:api:profile:read",
    "allegro:api:profile:write",
    "allegro:api:sale:offers:read",
    "allegro:api:sale:offers:write",
    "allegro:api:orders:read",
    "allegro:api:orders:write",
    "allegro:api:shipments:read",
    "allegro:api:shipments:write",
    "allegro:api:ratings",
    "allegro:api:disputes",
    "allegro:api:bids",
    "allegro:api:messaging",
    "allegro:api:billing:read",
    "allegro:api:payments:read",
    "allegro:api:payments:write",
    "allegro:api:sale:settings:read",
    "allegro:api:sale:settings:write",
    "allegro:api:campaigns",
    "allegro:api:fulfillment:read",
    "allegro:api:fulfillment:write",
    "allegro:api:affiliate:read",
    "allegro:api:affiliate:write",
    "allegro:api:ads",
)

# The app the fake registers unless told otherwise, and the one `allegro-link dev` signs in as.
DEV_CLIENT_ID = "allegro-link-dev"
DEV_CLIENT_SECRET = "allegro-link-dev-secret"  # noqa: S105 - a well-known dev value, valid only on the fake
DEV_REDIRECT_URI = "http://localhost:8000/oauth/callback"

ENV_PREFIX = "ALLEGRO_LINK_FAKE_"


class FakeConfigError(ValueError):
    """An ALLEGRO_LINK_FAKE_* variable has a value the fake cannot use."""


@dataclass(frozen=True, kw_only=True)
class FakeClient:
    """An app registered in (fake) Developer Apps."""

    client_id: str
    client_secret: str
    # Matched 1:1 against the `redirect_uri` of an authorize request, like Allegro does.
    redirect_uris: Sequence[str]
    # The scopes declared for the app: an authorize request without `scope` gets all of them.
    scopes: Sequence[str] = ALL_SCOPES
    # Shown on the consent page; defaults to the client id.
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class FakeAllegroConfig:
    clients: Sequence[FakeClient] = ()
    access_token_ttl: int = 12 * 3600
    refresh_token_ttl: int = 90 * 86400
    code_ttl: float = 10
    # A used refresh token keeps working this long after its first use (Allegro's network buffer).
    refresh_grace: float = 60
    # Active access tokens per user and client; minting one more kills the oldest session.
    max_active_access_tokens: int = 20
    # `/__fake__/*` test controls. Off unless asked for: they let anyone revoke or expire tokens.
    controls_enabled: bool = False
    issuer: str = "https://allegro.pl"
    # Wall-clock source for every expiry decision; tests inject their own to fast-forward.
    clock: Callable[[], float] = time.time
    # Scope a token needs for GET /me (403 without it). None turns the check off.
    me_required_scope: str | None = "allegro:api:profile:read"
    # RS256 signing key; generated per app when None. Tests pass one to skip the key generation.
    signing_key: RSAPrivateKey | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FakeAllegroConfig:
        """Build the config of `allegro-link fake-allegro` from ALLEGRO_LINK_FAKE_* variables.

        The test controls stay off: only `--controls` turns them on, never a variable, because the
        fake ships in the production image and an inherited variable must not open them there.
        """
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or default

        if env.get(ENV_PREFIX + "CONTROLS"):
            # It used to switch the controls on, and did by default; a leftover must not look obeyed.
            raise FakeConfigError(
                f"{ENV_PREFIX}CONTROLS is no longer read: pass --controls to enable the test controls"
            )
        redirect_uris = [
            uri.strip() for uri in get("REDIRECT_URIS", DEV_REDIRECT_URI).split(",") if uri.strip()
        ]
        client = FakeClient(
            client_id=get("CLIENT_ID", DEV_CLIENT_ID),
            client_secret=get("CLIENT_SECRET", DEV_CLIENT_SECRET),
            redirect_uris=redirect_uris,
        )
        return cls(
            clients=[client],
            access_token_ttl=_positive_int(get("ACCESS_TTL", str(cls.access_token_ttl)), "ACCESS_TTL"),
            refresh_token_ttl=_positive_int(get("REFRESH_TTL", str(cls.refresh_token_ttl)), "REFRESH_TTL"),
        )


def _positive_int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise FakeConfigError(f"{ENV_PREFIX}{name} must be a whole number of seconds") from None
    if number < 2:
        # expires_in is the lifetime minus one second, so anything shorter would read as already expired.
        raise FakeConfigError(f"{ENV_PREFIX}{name} must be at least 2 seconds")
    return number
