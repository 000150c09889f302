"""A token bucket shared by the keep-alive's refreshes and calls, far below Allegro's rate limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Token bucket: at most `per_minute` acquisitions a minute, evenly spaced."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = 60.0 / per_minute
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    async def acquire(self) -> None:
        now = self._clock()
        wait = self._next - now
        self._next = max(now, self._next) + self._interval
        if wait > 0:
            await self._sleep(wait)
