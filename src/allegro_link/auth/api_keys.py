"""Service API keys: creating, listing and revoking them (the CLI), and verifying them (every request).

A key reads `alk_<prefix>_<secret>_<check>`: `prefix` is 12 random letters and digits, public, and finds
the row; `secret` is 32 random bytes (url-safe base64, 43 characters); `check` is the CRC32 of everything
before it in 6 base62 characters. Only SHA-256 of the whole key is stored: the key carries 256 bits of
randomness, so a fast hash suffices and nothing stored lets anyone rebuild it.

Presenting a key must not cost a database query unless the key could be genuine. A made-up or mistyped
key of the current format fails its check (all but one in 4 billion) and is refused on the spot. Keys of
the first format (`alk_<prefix>_<secret>`, no check) are no longer created, so the set of their prefixes
only shrinks: the verifier keeps the set of existing prefixes and refuses a first-format key whose
prefix is not in it, reading the set again at most once per `negative_ttl_seconds`.

Names identify keys for good (the token audit log records them), so a revoked key keeps its name and
the name is not reused: create the replacement under a new name, switch the service over, then revoke.

Verification is cached per prefix for `cache_ttl_seconds` (default 30 s), which is also how long a revoked
key may still be accepted by a replica that saw it just before the revocation.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import string
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.auth.models import ApiKey
from allegro_link.auth.scopes import KEY_MARKER, KNOWN_SCOPES
from allegro_link.db import utcnow
from allegro_link.singleflight import SingleFlight

PREFIX_LENGTH = 12
SECRET_BYTES = 32
NAME_MAX_LENGTH = 100
# Anything longer is not one of our keys; it is refused before hashing or touching the database.
MAX_PRESENTED_LENGTH = 200

_PREFIX_ALPHABET = string.ascii_letters + string.digits
_KEY_SHAPE = re.compile(
    rf"{re.escape(KEY_MARKER)}([A-Za-z0-9]{{12}})_[A-Za-z0-9_-]{{43}}(?:_([A-Za-z0-9]{{6}}))?"
)
CHECK_LENGTH = 6
log = structlog.get_logger(__name__)
# Compared against when the prefix is unknown, so that the work done does not depend on the prefix.
_NO_KEY_HASH = bytes(hashlib.sha256().digest_size)


class ApiKeyError(Exception):
    """An invalid name or scope list, or a name that is already taken. The message is for the operator."""


@dataclass(frozen=True, slots=True)
class ServicePrincipal:
    """An internal service, authenticated by its API key."""

    key_id: uuid.UUID
    name: str
    scopes: frozenset[str]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _check_of(body: str) -> str:
    """CRC32 of `body` in base62, 6 characters (62**6 > 2**32)."""
    value = zlib.crc32(body.encode())
    digits = []
    for _ in range(CHECK_LENGTH):
        value, digit = divmod(value, len(_PREFIX_ALPHABET))
        digits.append(_PREFIX_ALPHABET[digit])
    return "".join(reversed(digits))


def _new_key() -> tuple[str, str]:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    body = f"{KEY_MARKER}{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return prefix, f"{body}_{_check_of(body)}"


@dataclass(frozen=True, slots=True)
class _Presented:
    prefix: str
    first_format: bool  # alk_<prefix>_<secret>, without a check


def _parse(presented: str) -> _Presented | None:
    """The prefix of a key that may be one of ours, or None for anything that cannot be."""
    if len(presented) > MAX_PRESENTED_LENGTH or not presented.isascii():
        return None
    match = _KEY_SHAPE.fullmatch(presented)
    if match is None:
        return None
    check = match.group(2)
    if check is None:
        return _Presented(match.group(1), first_format=True)
    if check != _check_of(presented[: -CHECK_LENGTH - 1]):
        return None
    return _Presented(match.group(1), first_format=False)


def _check_name(name: str) -> str:
    if not 1 <= len(name) <= NAME_MAX_LENGTH or not name.isprintable() or name != name.strip():
        raise ApiKeyError(
            f"an API key name must be 1-{NAME_MAX_LENGTH} printable characters "
            "without leading or trailing spaces"
        )
    return name


def _check_scopes(scopes: Sequence[str]) -> list[str]:
    if isinstance(scopes, str):
        scopes = [scopes]
    unknown = sorted(set(scopes) - KNOWN_SCOPES)
    if unknown:
        raise ApiKeyError(
            f"unknown scope {', '.join(map(repr, unknown))}; known scopes: {', '.join(sorted(KNOWN_SCOPES))}"
        )
    if not scopes:
        raise ApiKeyError(f"give at least one scope: {', '.join(sorted(KNOWN_SCOPES))}")
    return sorted(set(scopes))


async def create_api_key(session: AsyncSession, *, name: str, scopes: Sequence[str]) -> str:
    """Store a new key and return it; this is the only time the key exists in clear.

    The caller commits. Raises `ApiKeyError` for a bad name or scope, or a name used before (even by
    a revoked key).
    """
    name = _check_name(name)
    scope_list = _check_scopes(scopes)
    prefix, key = _new_key()
    # ON CONFLICT on the name only: a concurrent create with the same name loses cleanly.
    inserted = await session.scalar(
        insert(ApiKey)
        .values(name=name, prefix=prefix, secret_hash=hash_api_key(key), scopes=scope_list)
        .on_conflict_do_nothing(index_elements=[ApiKey.name])
        .returning(ApiKey.id)
    )
    if inserted is None:
        revoked_at = await session.scalar(select(ApiKey.revoked_at).where(ApiKey.name == name))
        if revoked_at is not None:
            raise ApiKeyError(
                f"the API key named {name!r} was revoked on {revoked_at:%Y-%m-%d}; "
                "names are not reused, choose another"
            )
        raise ApiKeyError(f"an API key named {name!r} already exists")
    return key


async def list_api_keys(session: AsyncSession) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    result = await session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))
    return list(result)


async def revoke_api_key(session: AsyncSession, name: str) -> bool:
    """Revoke the active key called `name`; False when there is none. The caller commits.

    Replicas stop accepting the key within their verification cache TTL.
    """
    revoked = await session.scalar(
        update(ApiKey)
        .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(ApiKey.id)
    )
    return revoked is not None


@dataclass(frozen=True, slots=True)
class _StoredKey:
    secret_hash: bytes
    principal: ServicePrincipal | None  # None once revoked


@dataclass(frozen=True, slots=True)
class _Entry:
    stored: _StoredKey | None  # None: no key has this prefix
    expires_at: float
    refresh_at: float  # from here to `expires_at`, served while a lookup in the background renews it


# A known key's row is read again in the background once this share of its TTL has passed, so that
# under steady traffic no caller waits for the lookup: when the entry simply expired, every request
# in flight with the key waited for one query at once, which was the token endpoint's p99
# (docs/performance.md). The revocation delay is still the TTL: nothing is served past `expires_at`.
_REFRESH_AFTER_SHARE = 0.8


class ApiKeyVerifier:
    """Checks presented keys without a database round trip per request.

    Rows are cached by prefix for `cache_ttl_seconds` (the revocation delay) and unknown prefixes for
    `negative_ttl_seconds`, so that garbage keys cannot hammer the database. The two caches are bounded
    separately (least recently used goes first), so a flood of made-up prefixes cannot evict real keys.
    Concurrent lookups of one uncached prefix share a single query, and a key in use is read again in
    the background shortly before its entry expires.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        cache_ttl_seconds: float = 30.0,
        negative_ttl_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._ttl = cache_ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._clock = clock
        self._max_entries = max_entries
        self._known: OrderedDict[str, _Entry] = OrderedDict()
        self._unknown: OrderedDict[str, _Entry] = OrderedDict()
        self._lookups: SingleFlight[str, _StoredKey | None] = SingleFlight("api-key-lookup")
        self._prefixes: frozenset[str] = frozenset()
        self._prefixes_read_at = float("-inf")
        self._prefix_reads: SingleFlight[None, None] = SingleFlight("api-key-prefixes")
        self._renewals: set[asyncio.Task[_StoredKey | None]] = set()

    async def verify(self, presented: str) -> ServicePrincipal | None:
        """The service behind `presented`, or None for a malformed, unknown, wrong or revoked key."""
        parsed = _parse(presented)
        if parsed is None:
            return None
        prefix = parsed.prefix
        if parsed.first_format and prefix not in self._known and not await self._prefix_exists(prefix):
            return None
        presented_hash = hash_api_key(presented)
        stored = await self._stored(prefix)
        # Always one full constant-time comparison, whether or not the prefix exists.
        matches = hmac.compare_digest(presented_hash, stored.secret_hash if stored else _NO_KEY_HASH)
        if stored is None or not matches:
            return None
        return stored.principal

    async def _prefix_exists(self, prefix: str) -> bool:
        if prefix in self._prefixes:
            return True
        if self._clock() - self._prefixes_read_at < self._negative_ttl:
            return False
        # Shared like `_load`: concurrent misses cost one query.
        await self._prefix_reads.run(None, self._read_prefixes)
        return prefix in self._prefixes

    async def _read_prefixes(self) -> None:
        async with self._sessionmaker() as session:
            prefixes = frozenset((await session.scalars(select(ApiKey.prefix))).all())
        self._prefixes = prefixes
        self._prefixes_read_at = self._clock()

    async def _stored(self, prefix: str) -> _StoredKey | None:
        now = self._clock()
        for cache in (self._known, self._unknown):
            entry = cache.get(prefix)
            if entry is None:
                continue
            if entry.expires_at > now:
                cache.move_to_end(prefix)
                if entry.refresh_at <= now and prefix not in self._lookups:
                    self._renew(prefix)
                return entry.stored
            del cache[prefix]
        # One caller giving up (a client disconnect) does not cancel the others' lookup.
        return await self._lookups.run(prefix, lambda: self._load(prefix))

    def _renew(self, prefix: str) -> None:
        """Read the row again in the background; callers meanwhile get the entry, or join the lookup."""
        renewal = asyncio.create_task(
            self._lookups.run(prefix, lambda: self._load(prefix)), name="api-key-renewal"
        )
        self._renewals.add(renewal)  # held until done: the loop keeps only weak references to tasks
        renewal.add_done_callback(self._renewed)

    def _renewed(self, renewal: asyncio.Task[_StoredKey | None]) -> None:
        self._renewals.discard(renewal)
        if not renewal.cancelled() and (failure := renewal.exception()) is not None:
            # The entry stays until it expires; the next caller after that looks the key up itself.
            log.warning("api_key.renewal_failed", error=type(failure).__name__)

    async def aclose(self) -> None:
        for renewal in list(self._renewals):
            renewal.cancel()
        await asyncio.gather(*self._renewals, return_exceptions=True)

    async def _load(self, prefix: str) -> _StoredKey | None:
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(
                        ApiKey.id, ApiKey.name, ApiKey.secret_hash, ApiKey.scopes, ApiKey.revoked_at
                    ).where(ApiKey.prefix == prefix)
                )
            ).one_or_none()
        if row is None:
            self._remember(self._unknown, prefix, None, self._negative_ttl)
            return None
        principal = None
        if row.revoked_at is None:
            principal = ServicePrincipal(key_id=row.id, name=row.name, scopes=frozenset(row.scopes))
        stored = _StoredKey(secret_hash=bytes(row.secret_hash), principal=principal)
        self._remember(self._known, prefix, stored, self._ttl)
        return stored

    def _remember(
        self, cache: OrderedDict[str, _Entry], prefix: str, stored: _StoredKey | None, ttl: float
    ) -> None:
        now = self._clock()
        cache[prefix] = _Entry(stored, now + ttl, now + ttl * _REFRESH_AFTER_SHARE)
        cache.move_to_end(prefix)
        while len(cache) > self._max_entries:
            cache.popitem(last=False)
