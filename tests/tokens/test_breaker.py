"""The credentials check behind a 401: made after the 401, shared by the 401s that wait for it."""

from __future__ import annotations

import asyncio

import pytest

from allegro_link.allegro.client import AllegroUnavailable
from allegro_link.tokens.breaker import CredentialsBreaker


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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(probe: Probe, clock: Clock) -> CredentialsBreaker:
    return CredentialsBreaker(probe, cache_seconds=60, clock=clock)


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
        self, breaker: CredentialsBreaker, probe: Probe, clock: Clock
    ) -> None:
        await probe.verdicts.put(False)
        assert await breaker.credentials_valid() is False
        clock.now += 59
        assert await breaker.credentials_valid() is False
        assert breaker.remaining() == pytest.approx(1.0)
        assert probe.started == 1
        clock.now += 2
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
