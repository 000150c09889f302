"""The retry rules shared by both clients, on a clock the test controls (no sleeping)."""

from __future__ import annotations

import httpx
import pytest
from allegro_link_client import AllegroLinkUnavailable
from allegro_link_client._retry import Attempts, RetryPolicy

from tests.support.clock import FakeClock


def unavailable(retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {
        "type": "urn:x",
        "title": "Allegro is unavailable",
        "status": 503,
        "detail": "later",
        "code": "allegro_unavailable",
    }
    return httpx.Response(503, json=body, headers={**headers, "Content-Type": "application/problem+json"})


def attempts(
    clock: FakeClock, *, deadline: float = 10, max_attempts: int = 4, extra_time: float = 0
) -> Attempts:
    policy = RetryPolicy(deadline=deadline, max_attempts=max_attempts)
    return policy.start(extra_time, clock=clock, jitter=lambda: 1.0)


class TestWaits:
    def test_retry_after_is_waited_exactly(self) -> None:
        clock = FakeClock(100.0)
        state = attempts(clock)
        state.start_attempt()

        assert state.wait_before_next(unavailable("3")) == 3

    def test_without_retry_after_the_backoff_doubles_up_to_its_cap(self) -> None:
        clock = FakeClock(100.0)
        state = attempts(clock, deadline=100, max_attempts=10)
        waits = []
        for _ in range(6):
            state.start_attempt()
            waits.append(state.wait_before_next(httpx.ConnectError("refused")))

        assert waits == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]

    def test_each_attempt_may_take_only_what_is_left_of_the_deadline(self) -> None:
        clock = FakeClock(100.0)
        state = attempts(clock, deadline=10)
        clock.now += 7

        assert state.start_attempt()["read"] == pytest.approx(3)


class TestGivingUp:
    def test_after_max_attempts_the_last_answer_is_raised_as_a_typed_error(self) -> None:
        clock = FakeClock(100.0)
        state = attempts(clock, max_attempts=2)
        state.start_attempt()
        state.wait_before_next(unavailable("1"))
        state.start_attempt()

        with pytest.raises(AllegroLinkUnavailable) as raised:
            state.wait_before_next(unavailable("1"))

        assert (raised.value.retry_after, raised.value.code) == (1, "allegro_unavailable")

    def test_a_wait_that_would_end_after_the_deadline_is_not_started(self) -> None:
        clock = FakeClock(100.0)
        state = attempts(clock, deadline=10)
        state.start_attempt()
        clock.now += 8

        with pytest.raises(AllegroLinkUnavailable) as raised:
            state.wait_before_next(unavailable("3"))

        assert raised.value.retry_after == 3

    def test_a_connection_error_becomes_unavailable_with_its_cause(self) -> None:
        clock = FakeClock(100.0)
        state = attempts(clock, max_attempts=1)
        state.start_attempt()
        cause = httpx.ConnectError("refused")

        with pytest.raises(AllegroLinkUnavailable) as raised:
            state.wait_before_next(cause)

        assert raised.value.__cause__ is cause
        assert raised.value.retry_after is None

    def test_a_long_poll_gets_its_wait_on_top_of_the_deadline(self) -> None:
        clock = FakeClock(100.0)
        state = attempts(clock, deadline=2, extra_time=30)
        state.start_attempt()
        clock.now += 20

        assert state.wait_before_next(unavailable("1")) == 1
