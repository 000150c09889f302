"""Circuit breakers for Allegro's token endpoint (per process).

- `OutageBreaker`: after consecutive transient failures (5xx, 429, timeouts), stop calling Allegro for a
  cool-down, so a storm of callers does not hammer an Allegro that is down or rate-limiting us (a 429
  blocks the whole client id for a minute). While open, callers get their still-valid token or 503
  with Retry-After; it closes by itself after the cool-down (at most 60 s).
- `CredentialsBreaker`: a refresh answered 401 is either this account's revoked grant or our broken
  client secret. Before flagging the account we ask Allegro whether our credentials still work, with a
  check that starts after the 401 arrived: a good verdict from before it says nothing about the secret
  now (it may have been rotated at Allegro a second ago), so only a broken verdict is kept (it opens
  the breaker: no account is flagged while it is open). One check at a time per process; the 401s that
  arrive before it starts share it.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        self._broken_at: float | None = None
        # The check that has not started yet: every 401 arriving until it starts waits for its verdict.
        self._next: asyncio.Future[bool] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def credentials_valid(self) -> bool:
        """True when Allegro accepts our client credentials, as checked after this call began.

        Raises AllegroUnavailable if the check cannot tell.
        """
        if self.broken():
            return False
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        verdict = self._next
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="credentials-check")
        # shield: a caller that goes away must not cancel the verdict the others wait for.
        return await asyncio.shield(verdict)

    async def _run(self) -> None:
        while (verdict := self._next) is not None:
            self._next = None  # the check starts now: later 401s wait for the one after it
            if self.broken():
                verdict.set_result(False)  # found broken meanwhile; that is never a reason to flag
                continue
            try:
                valid = await self._probe()
            except asyncio.CancelledError:
                verdict.cancel()
                raise
            except Exception as exc:
                verdict.set_exception(exc)
                verdict.exception()  # retrieved by its waiters; not "never retrieved" if they left
                continue
            if not valid:
                self._broken_at = self._clock()
            verdict.set_result(valid)

    def broken(self) -> bool:
        """Known broken (and not yet re-checked): refreshes should not even be attempted."""
        return self._broken_at is not None and self._clock() - self._broken_at <= self._cache_seconds

    def remaining(self) -> float:
        if self._broken_at is None or not self.broken():
            return 0.0
        return max(self._cache_seconds - (self._clock() - self._broken_at), 1.0)

    async def aclose(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
