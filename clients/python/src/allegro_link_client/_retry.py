"""When to try a call to allegro-link again, and how long to wait first (shared by sync and async).

Retried: connection errors and timeouts (every operation is safe to repeat: a token read is, and a
refresh that names the rejected token refreshes at most once however often it arrives) and 503s,
after their `Retry-After`. Everything is bounded twice: by `max_attempts` and by the caller's total
`deadline`, which also caps each attempt's own timeout. A wait that would end past the deadline is
not started: the caller gets the error at once, with `retry_after` to plan by.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from allegro_link_client._errors import (
    AllegroLinkError,
    error_from_response,
    retry_after_seconds,
    unreachable,
)

Failure = httpx.Response | httpx.TransportError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    deadline: float = 10.0
    max_attempts: int = 4
    first_backoff: float = 0.2
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.deadline <= 0 or self.max_attempts < 1:
            raise ValueError("deadline must be positive and max_attempts at least 1")

    def ends_at(self, clock: Callable[[], float] = time.monotonic) -> float:
        return clock() + self.deadline

    def start(
        self,
        extra_time: float = 0.0,
        *,
        ends_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> Attempts:
        """The attempts of one call; `ends_at` when part of the caller's deadline is spent already."""
        end = (ends_at if ends_at is not None else self.ends_at(clock)) + extra_time
        return Attempts(self, end, clock, jitter)


class Attempts:
    """The retry state of one call."""

    def __init__(
        self,
        policy: RetryPolicy,
        ends_at: float,
        clock: Callable[[], float],
        jitter: Callable[[], float],
    ) -> None:
        self._policy = policy
        self._ends_at = ends_at
        self._clock = clock
        self._jitter = jitter
        self.made = 0

    def start_attempt(self) -> dict[str, float | None]:
        """Count an attempt; its timeouts (httpx's request extension) are whatever is left of the deadline."""
        self.made += 1
        return httpx.Timeout(max(self._ends_at - self._clock(), 0.001)).as_dict()

    def wait_before_next(self, failure: Failure) -> float:
        """Seconds to sleep before trying again; raises the caller's error when there is no next attempt."""
        if isinstance(failure, httpx.Response):
            final: AllegroLinkError = error_from_response(failure)
            asked = retry_after_seconds(failure)
        else:
            final = unreachable(failure)
            asked = None
        # Jittered (half to all of the backoff), so that clients hit by one outage do not return in step.
        backoff = min(self._policy.max_backoff, self._policy.first_backoff * 2 ** (self.made - 1))
        delay = asked if asked is not None else backoff * (0.5 + self._jitter() / 2)
        if self.made >= self._policy.max_attempts or self._clock() + delay >= self._ends_at:
            if isinstance(failure, httpx.TransportError):
                raise final from failure
            raise final
        return delay


def is_retryable(response: httpx.Response) -> bool:
    return response.status_code == 503
