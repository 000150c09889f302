"""A real webhook receiver on 127.0.0.1 (uvicorn in a thread) that records every POST it gets."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.live import serve_in_thread


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: str
    status: int  # what the receiver answered

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


# (webhook-id, how many times it arrived before this one) → the status to answer
Script = Callable[[str, int], int]


@dataclass
class Receiver:
    url: str
    script: Script
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seen: Counter[str] = field(default_factory=Counter)

    def answer(self, headers: dict[str, str], body: str) -> int:
        with self._lock:
            webhook_id = headers.get("webhook-id", "")
            status = self.script(webhook_id, self._seen[webhook_id])
            self._seen[webhook_id] += 1
            self.received.append(Received(headers, body, status))
            return status

    def delivered(self) -> list[Received]:
        """The arrivals the receiver accepted (2xx), in arrival order."""
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    async def wait_for(self, predicate: Callable[[list[Received]], bool], within: float) -> list[Received]:
        deadline = time.monotonic() + within
        while True:
            with self._lock:
                snapshot = list(self.received)
            if predicate(snapshot):
                return snapshot
            assert time.monotonic() < deadline, (
                f"receiver got {len(snapshot)} deliveries, not what was awaited"
            )
            await asyncio.sleep(0.02)


def always(status: int) -> Script:
    return lambda _id, _n: status


@contextmanager
def receiver(script: Script | None = None, *, delay: float = 0.0) -> Iterator[Receiver]:
    """`delay`: seconds each answer takes (keeps deliveries in flight, e.g. while a replica is killed)."""
    holder: list[Receiver] = []

    async def receive(request: Request) -> Response:
        body = (await request.body()).decode()
        if delay:
            await asyncio.sleep(delay)
        status = holder[0].answer(dict(request.headers), body)
        headers = {"location": "http://127.0.0.1:9/elsewhere"} if 300 <= status < 400 else None
        return Response(status_code=status, headers=headers)

    app = Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])
    with serve_in_thread(app) as url:
        found = Receiver(url=f"{url}/hooks", script=script or always(204))
        holder.append(found)
        yield found
