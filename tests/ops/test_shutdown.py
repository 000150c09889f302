"""Stopping the app's background tasks ends, even when one of them does not."""

from __future__ import annotations

import asyncio

from allegro_link.app import stop_background
from tests.ops.test_logs import lines
from tests.support.logs import captured_logs


async def test_a_task_that_ignores_cancellation_does_not_hold_up_the_stop_and_is_named() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # swallows every cancellation, as a buggy loop would

    obedient = asyncio.create_task(asyncio.sleep(10), name="obedient")
    stuck = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)  # both running
    with captured_logs("INFO") as sink:
        # Waiting on each task in turn (the old stop) never returns here: the outer bound fails it.
        async with asyncio.timeout(5):
            await stop_background([obedient, stuck], grace_seconds=0.2)
    assert obedient.cancelled()
    assert [line["task"] for line in lines(sink) if line["event"] == "app.background_task_stuck"] == [
        "stubborn"
    ]
    release.set()
    stuck.cancel()
    await stuck
