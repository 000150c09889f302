"""One shared flight per key: what the token broker's refreshes and the API key lookups rely on."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from allegro_link.singleflight import SingleFlight


class Work:
    """A piece of work the test finishes when it chooses; counts how often it was started."""

    def __init__(self) -> None:
        self.started = 0
        self.running = asyncio.Event()
        self.outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def __call__(self) -> str:
        self.started += 1
        self.running.set()
        return await self.outcome


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _abandoned(flights: SingleFlight[str, str], key: str, work: Work) -> None:
    """Start a flight for `key` whose only caller then leaves."""
    leaving = asyncio.create_task(flights.run(key, work))
    await work.running.wait()
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving


class TestSharing:
    async def test_concurrent_callers_share_one_task(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight("test")
        work = Work()
        callers = [asyncio.create_task(flights.run("a", work)) for _ in range(10)]
        await work.running.wait()
        assert "a" in flights
        work.outcome.set_result("done")
        assert await asyncio.gather(*callers) == ["done"] * 10
        assert work.started == 1

    async def test_other_keys_fly_on_their_own(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight("test")
        first, second = Work(), Work()
        a = asyncio.create_task(flights.run("a", first))
        b = asyncio.create_task(flights.run("b", second))
        await first.running.wait()
        await second.running.wait()
        second.outcome.set_result("b")
        assert await b == "b"
        assert "a" in flights and "b" not in flights
        first.outcome.set_result("a")
        assert await a == "a"

    async def test_the_key_is_forgotten_once_the_flight_ends(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight("test")
        first = Work()
        first.outcome.set_result("first")
        assert await flights.run("a", first) == "first"
        assert "a" not in flights
        assert len(flights) == 0
        second = Work()
        second.outcome.set_result("second")
        assert await flights.run("a", second) == "second"  # a new flight, not the old answer
        assert (first.started, second.started) == (1, 1)

    async def test_join_waits_for_the_flight_under_way(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight("test")
        work = Work()
        starter = asyncio.create_task(flights.run("a", work))
        await work.running.wait()
        joiner = asyncio.create_task(flights.join("a"))
        work.outcome.set_result("shared")
        assert (await starter, await joiner) == ("shared", "shared")
        with pytest.raises(KeyError):
            await flights.join("a")

    async def test_start_begins_a_new_flight_that_later_callers_share(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight("test")
        old, new = Work(), Work()
        old_waiter = asyncio.create_task(flights.run("a", old))
        await old.running.wait()
        # A caller for whom the flight under way is not enough starts its own; later callers join it.
        starter = asyncio.create_task(flights.start("a", new))
        await new.running.wait()
        later = asyncio.create_task(flights.run("a", Work()))
        old.outcome.set_result("old")
        assert await old_waiter == "old"
        assert "a" in flights  # the old flight's end does not forget the new one
        new.outcome.set_result("new")
        assert (await starter, await later) == ("new", "new")
        assert "a" not in flights


class TestCancellation:
    async def test_a_cancelled_caller_does_not_cancel_the_shared_work(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight("test")
        work = Work()
        leaving = asyncio.create_task(flights.run("a", work))
        staying = asyncio.create_task(flights.run("a", work))
        await work.running.wait()
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert "a" in flights
        work.outcome.set_result("done")
        assert await staying == "done"

    async def test_the_work_goes_on_when_every_caller_leaves(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight("test")
        work = Work()
        await _abandoned(flights, "a", work)
        await _settle()
        assert "a" in flights
        work.outcome.set_result("done")
        await _settle()
        assert "a" not in flights

    async def test_cancel_all_cancels_the_flights_under_way(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight("test")
        first, second = Work(), Work()
        waiters = [asyncio.create_task(flights.run(key, work)) for key, work in (("a", first), ("b", second))]
        await first.running.wait()
        await second.running.wait()
        flights.cancel_all()
        for waiter in waiters:
            with pytest.raises(asyncio.CancelledError):
                await waiter
        await _settle()
        assert len(flights) == 0


class TestFailure:
    async def test_an_exception_reaches_every_waiter(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight("test")
        work = Work()
        callers = [asyncio.create_task(flights.run("a", work)) for _ in range(3)]
        await work.running.wait()
        work.outcome.set_exception(LookupError("gone"))
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert [type(result) for result in results] == [LookupError] * 3
        assert "a" not in flights

    async def test_an_exception_nobody_waits_for_is_marked_retrieved(self) -> None:
        flights: SingleFlight[str, str] = SingleFlight("test")
        work = Work()
        await _abandoned(flights, "a", work)
        failure = LookupError("nobody hears this")
        unretrieved: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if context.get("exception") is failure:
                unretrieved.append(context)
            elif previous is not None:  # another test's leftovers, on this shared loop
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        try:
            work.outcome.set_exception(failure)
            await _settle()
            assert "a" not in flights
            gc.collect()  # "Task exception was never retrieved" is reported when the task is collected
            await _settle()
        finally:
            loop.set_exception_handler(previous)
        assert unretrieved == []
