"""One shared run of a piece of async work per key: concurrent callers wait for the same task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from functools import partial
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one flight (a task) per key; callers that come while it is under way share its result.

    A caller waits through `asyncio.shield`: one that is cancelled (a client that disconnects) stops
    waiting, but the work the others wait for goes on. An exception reaches every waiter, and is marked
    retrieved even if none is left to see it. The key is forgotten as soon as its flight ends, so the
    next call starts a new one.
    """

    __slots__ = ("_name", "_tasks")

    def __init__(self, name: str) -> None:
        self._name = name  # the tasks' name, as seen in task dumps and the shutdown log
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def __contains__(self, key: K) -> bool:
        """True while a flight for `key` is under way (a dict lookup: cheap enough for a hot path)."""
        return key in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    async def run(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """The result of the flight under way for `key`, or of a new one running `work()`."""
        task = self._tasks.get(key)
        if task is None:
            task = self._start(key, work)
        return await asyncio.shield(task)

    async def join(self, key: K) -> V:
        """The result of the flight under way for `key`; KeyError when there is none (check `in`)."""
        return await asyncio.shield(self._tasks[key])

    async def start(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """The result of a new flight running `work()`, which later callers share from now on.

        For a caller that needs more than the flight under way gives (it joined it and found the result
        not good enough for it): the earlier flight, if still running, runs on for its own waiters.
        """
        return await asyncio.shield(self._start(key, work))

    def cancel_all(self) -> None:
        """Cancel every flight under way (at shutdown); their waiters get `CancelledError`."""
        for task in list(self._tasks.values()):
            task.cancel()

    def _start(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> asyncio.Task[V]:
        task = asyncio.create_task(work(), name=self._name)
        self._tasks[key] = task
        task.add_done_callback(partial(self._forget, key))
        return task

    def _forget(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter re-raises it, and none may be left
