"""Waiting on a condition instead of sleeping for a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

POLL_SECONDS = 0.02


async def until(condition: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    """Poll `condition` until it holds. `within` bounds a failure; a quick condition costs nothing."""
    deadline = time.monotonic() + within
    while True:
        if await condition():
            return
        assert time.monotonic() < deadline, f"timed out after {within} s waiting for {what}"
        await asyncio.sleep(POLL_SECONDS)
