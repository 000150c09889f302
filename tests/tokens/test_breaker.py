"""The breakers in front of Allegro's token endpoint, on a clock the test moves (no sleeping).

The outage breaker opens after repeated failures or at Allegro's Retry-After and closes by itself; the
credentials check behind a 401 is made after the 401, shared by the 401s that wait for it, and only its
broken verdict is kept.
"""

from __future__ import annotations

import asyncio

import pytest

from allegro_link.allegro.client import AllegroUnavailable
from allegro_link.ops.metrics import Metrics
from allegro_link.tokens.breaker import MAX_COOLDOWN_SECONDS, CredentialsBreaker, OutageBreaker
from tests.support.clock import FakeClock


class Probe:
    """Allegro's answer to our credentials check, released by the test one check at a time."""

    def __init__(self) -> None:
        self.started = 0
        self.verdicts: asyncio.Queue[bool | Exception] = asyncio.Queue()
        self.running = asyncio.Event()

    async def __call__(self) -> bool:
        self.started += 1
        self.running.set()
        verdict = await self.verdicts.get()
        self.running.clear()
        if isinstance(verdict, Exception):
            raise verdict
        return verdict


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(probe: Probe, clock: FakeClock) -> CredentialsBreaker:
    return CredentialsBreaker(probe, cache_seconds=60, clock=clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def outage(metrics: Metrics, clock: FakeClock) -> OutageBreaker:
    return OutageBreaker(metrics, threshold=3, cooldown_seconds=10, clock=clock)


def _shown_open(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("allegro_link_allegro_breaker_open")


class TestOutageBreaker:
    def test_it_opens_after_the_threshold_of_consecutive_failures(
        self, outage: OutageBreaker, metrics: Metrics
    ) -> None:
        outage.record_failure(None)
        outage.record_failure(None)
        assert outage.remaining() == 0.0
        outage.record_failure(None)
        assert outage.remaining() == 10.0
        assert _shown_open(metrics) == 1

    def test_a_success_starts_the_count_again(self, outage: OutageBreaker) -> None:
        outage.record_failure(None)
        outage.record_failure(None)
        outage.record_success()
        outage.record_failure(None)
        outage.record_failure(None)
        assert outage.remaining() == 0.0

    def test_it_closes_by_itself_after_the_cooldown(
        self, outage: OutageBreaker, clock: FakeClock, metrics: Metrics
    ) -> None:
        for _ in range(3):
            outage.record_failure(None)
        clock.advance(9.5)
        assert outage.remaining() == pytest.approx(0.5)
        assert _shown_open(metrics) == 1
        clock.advance(0.5)
        assert outage.remaining() == 0.0
        assert _shown_open(metrics) == 0

    def test_after_the_cooldown_one_more_failure_opens_it_again(
        self, outage: OutageBreaker, clock: FakeClock
    ) -> None:
        for _ in range(3):
            outage.record_failure(None)
        clock.advance(10)
        assert outage.remaining() == 0.0
        outage.record_failure(None)  # no success in between: still failing
        assert outage.remaining() == 10.0

    def test_allegros_retry_after_opens_it_at_once_for_that_long(
        self, outage: OutageBreaker, metrics: Metrics
    ) -> None:
        outage.record_failure(30)
        assert outage.remaining() == 30.0
        assert _shown_open(metrics) == 1

    def test_a_retry_after_is_capped(self, outage: OutageBreaker) -> None:
        outage.record_failure(3600)
        assert outage.remaining() == MAX_COOLDOWN_SECONDS == 60.0

    def test_a_shorter_retry_after_never_shortens_an_open_breaker(
        self, outage: OutageBreaker, clock: FakeClock
    ) -> None:
        outage.record_failure(30)
        clock.advance(10)
        outage.record_failure(5)
        assert outage.remaining() == 20.0


class TestCredentialsBreaker:
    async def test_401s_that_arrive_before_the_check_starts_share_it(
        self, breaker: CredentialsBreaker, probe: Probe
    ) -> None:
        waiting = [asyncio.create_task(breaker.credentials_valid()) for _ in range(5)]
        await probe.running.wait()
        await probe.verdicts.put(True)
        assert await asyncio.gather(*waiting) == [True] * 5
        assert probe.started == 1

    async def test_a_401_during_a_check_waits_for_the_next_one(
        self, breaker: CredentialsBreaker, probe: Probe
    ) -> None:
        early = asyncio.create_task(breaker.credentials_valid())
        await probe.running.wait()
        # The secret breaks now; this 401 arrives after the running check started.
        late = [asyncio.create_task(breaker.credentials_valid()) for _ in range(3)]
        await asyncio.sleep(0)
        await probe.verdicts.put(True)
        assert await early is True
        await probe.running.wait()
        await probe.verdicts.put(False)
        assert await asyncio.gather(*late) == [False] * 3
        assert probe.started == 2

    async def test_a_good_verdict_is_never_reused(self, breaker: CredentialsBreaker, probe: Probe) -> None:
        for expected in (True, True, False):
            await probe.verdicts.put(expected)
            assert await breaker.credentials_valid() is expected
        assert probe.started == 3

    async def test_a_broken_verdict_is_kept_for_its_cache_time(
        self, breaker: CredentialsBreaker, probe: Probe, clock: FakeClock
    ) -> None:
        await probe.verdicts.put(False)
        assert await breaker.credentials_valid() is False
        clock.advance(59)
        assert await breaker.credentials_valid() is False
        assert breaker.remaining() == pytest.approx(1.0)
        assert probe.started == 1
        clock.advance(2)
        assert breaker.remaining() == 0.0
        await probe.verdicts.put(True)
        assert await breaker.credentials_valid() is True
        assert probe.started == 2

    async def test_a_check_that_cannot_tell_fails_all_its_waiters_and_is_not_kept(
        self, breaker: CredentialsBreaker, probe: Probe
    ) -> None:
        waiting = [asyncio.create_task(breaker.credentials_valid()) for _ in range(3)]
        await probe.running.wait()
        await probe.verdicts.put(AllegroUnavailable("Allegro answered 503", operation="credentials_check"))
        for outcome in await asyncio.gather(*waiting, return_exceptions=True):
            assert isinstance(outcome, AllegroUnavailable)
        await probe.verdicts.put(True)
        assert await breaker.credentials_valid() is True
        assert probe.started == 2

    async def test_a_caller_that_leaves_does_not_cancel_the_check(
        self, breaker: CredentialsBreaker, probe: Probe
    ) -> None:
        leaving = asyncio.create_task(breaker.credentials_valid())
        staying = asyncio.create_task(breaker.credentials_valid())
        await probe.running.wait()
        leaving.cancel()
        await probe.verdicts.put(False)
        assert await staying is False
        assert leaving.cancelled()

    async def test_a_401_queued_behind_a_check_that_finds_the_secret_broken_gets_that_verdict(
        self, breaker: CredentialsBreaker, probe: Probe
    ) -> None:
        early = asyncio.create_task(breaker.credentials_valid())
        await probe.running.wait()
        late = asyncio.create_task(breaker.credentials_valid())  # waits for the check after this one
        await asyncio.sleep(0)
        await probe.verdicts.put(False)
        assert await early is False
        async with asyncio.timeout(5):  # a bound for failing: a second check would wait for a verdict
            assert await late is False
        assert probe.started == 1
