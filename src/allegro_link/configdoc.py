"""docs/configuration.md, generated from the settings classes (`make docs`; a test keeps it in sync).

The meaning of each setting is written here, beside the generator, rather than in settings.py, so that
the reference is one readable table per command. A setting added without a meaning here fails the
sync test: the reference cannot silently fall behind the code.
"""

from __future__ import annotations

import typing
from typing import Any

from annotated_types import Ge, Gt, Le, MaxLen, MinLen
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from allegro_link.fake_allegro.config import (
    DEV_CLIENT_ID,
    DEV_CLIENT_SECRET,
    DEV_REDIRECT_URI,
    FakeAllegroConfig,
)
from allegro_link.settings import ENV_PREFIX, DatabaseSettings, KeyRingSettings, Settings

MEANINGS: dict[str, str] = {
    "database_url": "PostgreSQL to use, as `postgresql+asyncpg://user:password@host:5432/database`.",
    "db_pool_size": "Connections each process keeps open. Keep processes × (pool + overflow) under the "
    "server's `max_connections`.",
    "db_max_overflow": "Extra connections a process may open in a burst (closed after use).",
    "db_connect_timeout_seconds": "Time allowed to connect, and to wait for a free pooled connection.",
    "db_statement_timeout_seconds": "Server-side limit on each statement and lock wait: a stuck database "
    "answers 503 instead of hanging requests.",
    "db_pgbouncer": "Set `true` when the database URL points at PgBouncer in transaction pooling mode: "
    "no prepared statements are reused across transactions, no settings are sent at connect, and "
    "reads run in short transactions. Set the statement timeout on the role instead (docs/deploy.md).",
    "webhooks_enabled": "Run webhook delivery workers in this process (every replica may; each event "
    "is delivered once per endpoint whatever the number of replicas).",
    "webhook_retry_delays": "Comma-separated seconds between delivery attempts of one event; after the "
    "last one the delivery is marked failed (`webhooks list` shows it, `webhooks replay` resends it). "
    "Each delay is jittered by ±20 %.",
    "webhook_concurrency": "Deliveries in flight per process; one endpoint gets at most half of them. "
    "The workers use their own database pool of this size + 2, and one LISTEN connection.",
    "webhook_timeout_seconds": "How long an endpoint has to answer 2xx (at most 10 s); longer is a "
    "failed attempt.",
    "events_poll_seconds": "How often the event sequencer and long-polling feed readers look for new "
    "events when no notification woke them.",
    "encryption_keys": "Token encryption keys, comma-separated `key_id:base64key` entries of 32 bytes "
    "(AES-256); the first encrypts, all decrypt. Make one with `allegro-link encryption-key generate`.",
    "allegro_environment": "`production` (allegro.pl) or `sandbox` (allegro.pl.allegrosandbox.pl).",
    "allegro_auth_url": "Overrides the authorization host of the environment (`https://allegro.pl`), "
    "e.g. to point at the fake Allegro.",
    "allegro_api_url": "Overrides the API host of the environment (`https://api.allegro.pl`).",
    "client_id": "The Allegro application's client id (Allegro Developer Apps).",
    "client_secret": "The Allegro application's client secret.",
    "redirect_uri": "The redirect URI registered for the application at Allegro, exactly; it points at "
    "this service's `/oauth/callback`. No query string.",
    "return_url_allowlist": "Comma-separated absolute URL prefixes ending in `/`. A `return_to` must "
    "have the scheme, host and port of one of them and start with its path.",
    "owner_jwt_secret": "HS256 secret (at least 32 bytes) that verifies owner JWTs. Set this or "
    "`ALLEGRO_LINK_OWNER_JWT_JWKS_URL`, not both.",
    "owner_jwt_jwks_url": "URL of the identity provider's JWKS (RS256/ES256 keys) that verifies owner "
    "JWTs, instead of a shared secret.",
    "owner_jwt_issuer": "When set, owner JWTs must carry this `iss`.",
    "owner_jwt_audience": "When set, owner JWTs must carry this `aud`.",
    "link_state_ttl_seconds": "How long a started link waits for Allegro's callback.",
    "link_completion_ttl_seconds": "How long the frontend has, after the callback, to call "
    "`POST /oauth/complete`.",
    "allegro_connect_timeout_seconds": "Connect timeout of calls to Allegro.",
    "allegro_read_timeout_seconds": "Read timeout of calls to Allegro.",
    "token_refresh_deadline_seconds": "Deadline of one refresh call to Allegro. Must be shorter than the "
    "lock timeout, which must be shorter than the statement timeout.",
    "token_refresh_lock_timeout_seconds": "How long a request waits for a refresh of the same account "
    "running in another process or replica.",
    "api_key_cache_seconds": "How long a verified API key is cached per process: a revoked key stops "
    "working within this time.",
    "keepalive_enabled": "Let the keep-alive call Allegro: refresh accounts before their refresh token "
    "lapses and make a real API call (`GET /me`) for accounts not used lately (every replica may run "
    "it; no account is handled twice). When `false`, the re-login warnings, expiry events and gauges "
    "still run.",
    "keepalive_use_after_days": "An active account not used at Allegro for this many days (a token "
    "handed out, or a call of ours) gets a `GET /me` call: Allegro withdraws access after 90 days "
    "without use. Fractional days allowed.",
    "relogin_soon_days": "An active account whose re-login deadline (the earlier of its refresh "
    "token's expiry and last use + 90 days) is this close reads `relogin_soon` and gets an "
    "`account.relogin_soon` event (again at 3 days left). Fractional days allowed.",
    "keepalive_window_days": "Refresh accounts whose refresh token expires within this many days.",
    "keepalive_interval_seconds": "Time between keep-alive passes (jittered by ±20 %).",
    "keepalive_max_per_minute": "Cap on the keep-alive's refreshes and `GET /me` calls together, per "
    "minute and process.",
    "log_level": "`DEBUG`, `INFO`, `WARNING` or `ERROR`. Successful token reads are logged at DEBUG only.",
    "log_json": "One JSON object per line on stderr; `false` for plain text.",
    "demo_enabled": "Serve the demo panel at `/demo`. Outside `allegro-link dev` it asks for a pasted "
    "owner JWT: no setting makes the service mint owner JWTs.",
    "link_max_pending_per_owner": "Link starts an owner may have waiting for Allegro's callback; one more "
    "start drops the oldest (its callback then answers 400 `invalid_state`).",
    "owner_jwt_max_age_seconds": "When set, owner JWTs whose `iat` is older than this (plus 30 s leeway) "
    "are refused, and so are tokens without `iat`.",
    "http_header_timeout_seconds": "A request's headers must arrive within this once the connection waits "
    "for a request; later, the server answers 408 and closes it.",
    "http_body_timeout_seconds": "A request's body must arrive within this after its headers; later, the "
    "connection is closed.",
    "http_keepalive_timeout_seconds": "Idle keep-alive connections close after this. A proxy in front "
    "should close its idle upstream connections sooner.",
    "http_max_connections": "Open connections per process; beyond it new requests are answered 503.",
    "trusted_proxies": "Comma-separated IPs or CIDR networks of reverse proxies. When a request comes "
    "from one, the access log takes the client address from `X-Forwarded-For` (the nearest address that "
    "is not a trusted proxy); otherwise the header is ignored.",
}

# Each class adds to the one before: (class, section title).
LAYERS: tuple[tuple[type[DatabaseSettings], str], ...] = (
    (
        DatabaseSettings,
        "Database: every command that uses it (`serve`, `migrate`, `api-keys`, `accounts`, ...)",
    ),
    (KeyRingSettings, "Encryption keys: `serve` and `encryption-key rotate`"),
    (Settings, "The service: `serve`"),
)

HEADER = """\
# Configuration

<!-- Generated from src/allegro_link/configdoc.py by `make docs`; edit that file, not this one. -->

allegro-link reads `ALLEGRO_LINK_*` environment variables, and also a `.env` file in the working
directory (the environment wins). Names are case-insensitive. A missing or malformed value stops the
command with one line on stderr that names the variable (exit code 2).

Each command reads only what it uses: a command that touches only the database needs only
`ALLEGRO_LINK_DATABASE_URL`. `allegro-link openapi` and `allegro-link encryption-key generate` need
nothing. `allegro-link dev` reads only `ALLEGRO_LINK_LOG_LEVEL` and `ALLEGRO_LINK_LOG_JSON`, and refuses
to start when any other setting below is set in the environment or `.env`: it uses its own embedded
database and generated secrets.
"""

FOOTER = f"""\
## The fake Allegro (`allegro-link fake-allegro`)

| variable | default | meaning |
|---|---|---|
| `ALLEGRO_LINK_FAKE_CLIENT_ID` | `{DEV_CLIENT_ID}` | the one registered application's client id |
| `ALLEGRO_LINK_FAKE_CLIENT_SECRET` | `{DEV_CLIENT_SECRET}` | its secret |
| `ALLEGRO_LINK_FAKE_REDIRECT_URIS` | `{DEV_REDIRECT_URI}` | its redirect URIs |
| `ALLEGRO_LINK_FAKE_ACCESS_TTL` | `{FakeAllegroConfig.access_token_ttl}` | access token lifetime, \
seconds (at least 2) |
| `ALLEGRO_LINK_FAKE_REFRESH_TTL` | `{FakeAllegroConfig.refresh_token_ttl}` | refresh token lifetime, \
seconds (at least 2) |

The test controls under `/__fake__/` are off unless the command is given `--controls`; no variable
turns them on.

## Tests

| variable | meaning |
|---|---|
| `ALLEGRO_LINK_TEST_DATABASE_URL` | a PostgreSQL for `make test` (any database on the server; each \
worker creates and drops its own); unset, the suite starts an embedded server |
"""


def render() -> str:
    sections = [HEADER]
    documented: set[str] = set()
    for cls, title in LAYERS:
        names = [name for name in cls.model_fields if name not in documented]
        documented.update(names)
        rows = "\n".join(_row(name, cls.model_fields[name]) for name in names)
        sections.append(f"## {title}\n\n| variable | default | meaning |\n|---|---|---|\n{rows}\n")
    sections.append(FOOTER)
    return "\n".join(sections)


def undocumented() -> list[str]:
    return sorted(set(Settings.model_fields) - set(MEANINGS))


def _row(name: str, field: FieldInfo) -> str:
    meaning = MEANINGS.get(name) or field.description or ""
    limits = _limits(field)
    if limits:
        meaning = f"{meaning} Allowed: {limits}."
    return f"| `{ENV_PREFIX}{name.upper()}` | {_default(field)} | {meaning} |"


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    default: Any = field.get_default(call_default_factory=True)
    if default is None or default == [] or default is PydanticUndefined:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"


def _limits(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        if isinstance(item, Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, Le):
            parts.append(f"≤ {item.le}")
        elif isinstance(item, MinLen) and item.min_length > 1:
            parts.append(f"at least {item.min_length} characters")
        elif isinstance(item, MaxLen):
            parts.append(f"at most {item.max_length} characters")
    if typing.get_origin(field.annotation) is typing.Literal:
        parts.append(" or ".join(f"`{value}`" for value in typing.get_args(field.annotation)))
    return ", ".join(parts)


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
