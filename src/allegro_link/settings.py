"""Configuration from `ALLEGRO_LINK_*` environment variables (and `.env`).

Settings are layered so that each command asks only for what it uses: `migrate` needs a database,
`encryption-key rotate` a database and keys, `serve` everything. docs/configuration.md lists them all
(generated from these classes by `make docs`; a test keeps it in sync).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "ALLEGRO_LINK_"

ALLEGRO_HOSTS: dict[str, tuple[str, str]] = {
    "production": ("https://allegro.pl", "https://api.allegro.pl"),
    "sandbox": ("https://allegro.pl.allegrosandbox.pl", "https://api.allegro.pl.allegrosandbox.pl"),
}

AES_KEY_BYTES = 32


class ConfigError(Exception):
    """A missing or malformed setting; the message names the variable."""


@dataclass(frozen=True, slots=True)
class EncryptionKey:
    key_id: str
    secret: bytes


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


def _check_http_url(value: str, *, what: str = "") -> str:
    """`value` when it is an acceptable service URL; `what` names it inside a list ("entry '…'")."""
    what = f"{what} " if what else ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what}must be an absolute http(s) URL, got {value!r}")
    # Plain http can be read and rewritten on the way (a swapped JWKS signs anyone in); only a
    # loopback host, which never leaves the machine, may use it (development and tests).
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(f"{what}must use https (plain http only for loopback hosts), got {value!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what}must not contain user information")
    if parts.fragment:
        raise ValueError(f"{what}must not contain a fragment")
    return value


class PoolerSettings(BaseSettings):
    """How the service reaches PostgreSQL: directly, or through PgBouncer in transaction pooling mode.

    Its own class so that the Alembic environment can read it without requiring a database URL.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # True behind PgBouncer (pool_mode = transaction): no server-side prepared statement outlives its
    # transaction and nothing is set per session (see db.create_engine and docs/deploy.md).
    db_pgbouncer: bool = False


class DatabaseSettings(PoolerSettings):
    """What every command that touches PostgreSQL needs."""

    database_url: SecretStr = Field(description="postgresql+asyncpg://user:password@host:port/database")
    # 20 kept open: a burst of refreshes holds connections for as long as Allegro takes to answer,
    # and overflow connections are closed after each use, so a burst on a small pool reconnects.
    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Bounds every statement so that a stuck database answers 503 instead of hanging requests.
    db_statement_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError("must be a URL like postgresql+asyncpg://user@host:5432/db") from None
        if url.drivername != "postgresql+asyncpg":
            raise ValueError(f"must use the postgresql+asyncpg driver, got {url.drivername!r}")
        if not url.database:
            raise ValueError("must name a database")
        return value


class KeyRingSettings(DatabaseSettings):
    """Database plus the token encryption keys."""

    encryption_keys: SecretStr = Field(
        description="comma-separated key_id:base64key; the first encrypts, all decrypt"
    )

    @field_validator("encryption_keys")
    @classmethod
    def _check_encryption_keys(cls, value: SecretStr) -> SecretStr:
        parse_encryption_keys(value.get_secret_value())
        return value

    @property
    def encryption_key_ring(self) -> tuple[EncryptionKey, ...]:
        return parse_encryption_keys(self.encryption_keys.get_secret_value())


def parse_encryption_keys(raw: str) -> tuple[EncryptionKey, ...]:
    keys: list[EncryptionKey] = []
    for position, entry in enumerate(_split_csv(raw), start=1):
        key_id, sep, encoded = entry.partition(":")
        if not sep or not key_id or not encoded:
            raise ValueError(f"entry {position} must look like key_id:base64key")
        if not key_id.replace("-", "").replace("_", "").isalnum() or len(key_id) > 32:
            raise ValueError(f"key id {key_id!r} must be 1-32 letters, digits, '-' or '_'")
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not valid base64") from None
        if len(secret) != AES_KEY_BYTES:
            raise ValueError(
                f"key {key_id!r} must be {AES_KEY_BYTES} bytes (AES-256), got {len(secret)}; "
                "make one with `allegro-link encryption-key generate`"
            )
        if any(k.key_id == key_id for k in keys):
            raise ValueError(f"key id {key_id!r} appears twice")
        keys.append(EncryptionKey(key_id=key_id, secret=secret))
    if not keys:
        raise ValueError("at least one key is required")
    return tuple(keys)


class Settings(KeyRingSettings):
    """Everything `allegro-link serve` needs."""

    allegro_environment: Literal["production", "sandbox"] = "production"
    allegro_auth_url: str | None = Field(default=None, description="overrides https://allegro.pl")
    allegro_api_url: str | None = Field(default=None, description="overrides https://api.allegro.pl")
    client_id: str = Field(min_length=1, max_length=200)
    client_secret: SecretStr
    redirect_uri: str

    return_url_allowlist: Annotated[list[str], NoDecode] = Field(min_length=1)

    owner_jwt_secret: SecretStr | None = None
    owner_jwt_jwks_url: str | None = None
    owner_jwt_issuer: str | None = None
    owner_jwt_audience: str | None = None
    # Refuse owner JWTs issued (`iat`) longer ago than this, whatever their `exp`; tokens without
    # `iat` are refused while it is set. Unset: only `exp` limits a token's life.
    owner_jwt_max_age_seconds: int | None = Field(default=None, ge=1, le=30 * 86400)

    # How long a link session (the OAuth `state`) may wait for Allegro's callback.
    link_state_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    # How long the frontend has to call /oauth/complete after the callback.
    link_completion_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    # Link sessions an owner may have waiting for Allegro's callback; starting one more drops the oldest.
    link_max_pending_per_owner: int = Field(default=20, ge=1, le=1000)

    allegro_connect_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    allegro_read_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    # The refresh call to Allegro must end before a waiting replica gives up on the row lock, and that
    # wait must end before the database cancels the statement (checked below).
    token_refresh_deadline_seconds: float = Field(default=5.0, gt=0, le=60)
    token_refresh_lock_timeout_seconds: float = Field(default=8.0, gt=0, le=120)

    # Revoking an API key takes effect within this many seconds (verified keys are cached).
    api_key_cache_seconds: float = Field(default=30.0, ge=0, le=600)

    # `serve` only: bounds on slow clients (see http_deadlines.py). Headers must arrive within
    # http_header_timeout_seconds of the connection waiting for a request, the body within
    # http_body_timeout_seconds of the headers; idle keep-alive connections close after
    # http_keepalive_timeout_seconds; past http_max_connections connections a process answers 503.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    http_body_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    http_keepalive_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    http_max_connections: int = Field(default=1000, ge=1, le=100_000)

    keepalive_enabled: bool = True
    keepalive_window_days: float = Field(default=14.0, gt=0, le=80)
    # Allegro's 90-day use rule: an account unused this long gets a real API call from the keep-alive.
    keepalive_use_after_days: float = Field(default=30.0, gt=0, le=80)
    keepalive_interval_seconds: float = Field(default=300.0, ge=1, le=86400)
    keepalive_max_per_minute: int = Field(default=600, ge=1, le=3000)

    # An active account whose re-login deadline is this close reads `relogin_soon` and is warned about.
    relogin_soon_days: float = Field(default=14.0, gt=0, le=80)

    # Webhook delivery workers run in every `serve` replica unless turned off here.
    webhooks_enabled: bool = True
    # Seconds before each retry (jitter: 0.8-1.2 times). The default spans ~40 h, at least 24 h with jitter.
    webhook_retry_delays: Annotated[list[float], NoDecode] = Field(
        default=[5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200, 43200], min_length=1
    )
    webhook_concurrency: int = Field(default=8, ge=1, le=64)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=10)
    # Fallback when a NOTIFY is lost (a dropped listener connection): how often work is looked for.
    events_poll_seconds: float = Field(default=1.0, gt=0, le=10)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    demo_enabled: bool = False
    # Proxies (IPs or CIDRs) whose X-Forwarded-For names the client in the access log. Empty: the
    # peer address is the client, and X-Forwarded-For is ignored (anyone can send one).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("allegro_auth_url", "allegro_api_url", "owner_jwt_jwks_url")
    @classmethod
    def _check_optional_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return _check_http_url(value).rstrip("/")

    @field_validator("redirect_uri")
    @classmethod
    def _check_redirect_uri(cls, value: str) -> str:
        _check_http_url(value)
        if urlsplit(value).query:
            raise ValueError("must not carry a query string")
        return value

    @field_validator("webhook_retry_delays", mode="before")
    @classmethod
    def _split_retry_delays(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("webhook_retry_delays")
    @classmethod
    def _check_retry_delays(cls, value: list[float]) -> list[float]:
        if any(delay <= 0 or delay > 86400 for delay in value):
            raise ValueError("every delay must be more than 0 and at most 86400 seconds")
        return value

    @field_validator("return_url_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("return_url_allowlist")
    @classmethod
    def _check_allowlist(cls, value: list[str]) -> list[str]:
        for entry in value:
            _check_http_url(entry, what=f"entry {entry!r}")
            parts = urlsplit(entry)
            if parts.query:
                raise ValueError(f"entry {entry!r} must not carry a query string")
            if not parts.path.endswith("/"):
                raise ValueError(f"entry {entry!r} must end with '/'")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_trusted_proxies(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"entry {entry!r} must be an IP address or a CIDR network") from None
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies)

    @field_validator("owner_jwt_secret")
    @classmethod
    def _check_jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes long (HS256 key)")
        return value

    @model_validator(mode="after")
    def _one_owner_key_source(self) -> Settings:
        if (self.owner_jwt_secret is None) == (self.owner_jwt_jwks_url is None):
            raise ValueError(
                "set exactly one of ALLEGRO_LINK_OWNER_JWT_SECRET or ALLEGRO_LINK_OWNER_JWT_JWKS_URL"
            )
        return self

    @model_validator(mode="after")
    def _bounded_waits(self) -> Settings:
        if not self.token_refresh_deadline_seconds < self.token_refresh_lock_timeout_seconds:
            raise ValueError(
                "ALLEGRO_LINK_TOKEN_REFRESH_DEADLINE_SECONDS must be shorter than "
                "ALLEGRO_LINK_TOKEN_REFRESH_LOCK_TIMEOUT_SECONDS"
            )
        if not self.token_refresh_lock_timeout_seconds < self.db_statement_timeout_seconds:
            raise ValueError(
                "ALLEGRO_LINK_TOKEN_REFRESH_LOCK_TIMEOUT_SECONDS must be shorter than "
                "ALLEGRO_LINK_DB_STATEMENT_TIMEOUT_SECONDS"
            )
        return self

    @property
    def relogin_soon_window(self) -> timedelta:
        """How close to its re-login deadline an active account counts as `relogin_soon`."""
        return timedelta(days=self.relogin_soon_days)

    @property
    def auth_base_url(self) -> str:
        return self.allegro_auth_url or ALLEGRO_HOSTS[self.allegro_environment][0]

    @property
    def api_base_url(self) -> str:
        return self.allegro_api_url or ALLEGRO_HOSTS[self.allegro_environment][1]


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build settings, turning pydantic's report into one line that names each bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"{ENV_PREFIX}{field.upper()}" if field else "configuration"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required but not set"
        problems.append(f"{name} {message}" if field else message)
    return "invalid configuration: " + "; ".join(problems)
