"""Circuit breakers for Allegro's token endpoint (per process).

- `OutageBreaker`: after consecutive transient failures (5xx, 429, timeouts), stop calling Allegro for a
  cool-down, so a storm of callers does not hammer an Allegro that is down or rate-limiting us (a 429
  blocks the whole client id for a minute). While open, callers get their still-valid token or 503
  with Retry-After; it closes by itself after the cool-down (at most 60 s).
- `CredentialsBreaker`: a refresh answered 401 is either this account's revoked grant or our broken
  client secret. Before flagging the account we ask Allegro whether our credentials still work (cached
  for a minute). Broken credentials open the breaker: no account is flagged while it is open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from allegro_link.ops.metrics import Metrics

MAX_COOLDOWN_SECONDS = 60.0


class OutageBreaker:
    def __init__(
        self,
        metrics: Metrics,
        *,
        threshold: int = 3,
        cooldown_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._threshold = threshold
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0

    def remaining(self) -> float:
        """Seconds until calls to Allegro resume (0 when closed)."""
        left = self._open_until - self._clock()
        if left <= 0 and self._open_until:
            self._open_until = 0.0
            self._metrics.breaker_open.set(0)
        return max(left, 0.0)

    def record_success(self) -> None:
        self._failures = 0

    def record_failure(self, retry_after: float | None) -> None:
        self._failures += 1
        # Allegro's own Retry-After (a 429) opens at once; otherwise only repeated failures do.
        if retry_after is not None or self._failures >= self._threshold:
            cooldown = min(retry_after if retry_after is not None else self._cooldown, MAX_COOLDOWN_SECONDS)
            self._open_until = max(self._open_until, self._clock() + cooldown)
            self._metrics.breaker_open.set(1)


class CredentialsBreaker:
    def __init__(
        self,
        probe: Callable[[], Awaitable[bool]],
        *,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._verdict: bool | None = None
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()

    async def credentials_valid(self) -> bool:
        """True when Allegro accepts our client credentials. Raises AllegroUnavailable if it cannot tell."""
        async with self._lock:
            if self._verdict is None or self._clock() - self._checked_at > self._cache_seconds:
                self._verdict = await self._probe()
                self._checked_at = self._clock()
            return self._verdict

    def broken(self) -> bool:
        """Known broken (and not yet re-checked): refreshes should not even be attempted."""
        return self._verdict is False and self._clock() - self._checked_at <= self._cache_seconds

    def remaining(self) -> float:
        return max(self._cache_seconds - (self._clock() - self._checked_at), 1.0) if self.broken() else 0.0
