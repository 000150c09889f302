"""Injected failures for the token endpoint and /me: the next N calls fail in a chosen way.

A fault is taken from the queue under the store's lock, but any sleeping happens after the lock is
released, so one slow call never blocks the others (or the test controls).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Literal

import httpx
from fastapi import Request, Response

from allegro_link.fake_allegro.responses import ALLEGRO_JSON, OAUTH_JSON, json_response

FaultEndpoint = Literal["token", "me"]
FaultKind = Literal["status", "timeout", "delay", "hold", "reset", "truncate"]

# A key the app's outermost layer adds to each HTTP scope: uvicorn's per-request object, which
# holds the connection's transport. Starlette wraps `send`, so a route cannot reach it otherwise.
CONNECTION_SCOPE_KEY = "allegro_link.fake_allegro.connection"

_SERVER_ERROR_HTML = (
    "<!DOCTYPE html><html><head><title>{status} {phrase}</title></head>"
    "<body><h1>{status} {phrase}</h1><p>Przepraszamy, serwis jest chwilowo niedostępny.</p></body></html>"
)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    remaining: int
    status: int = 503
    delay_seconds: float = 30.0
    retry_after: int | None = None
    # `hold` only: set by the release control. Shared by the fault's `count` calls (`replace` keeps it).
    gate: threading.Event | None = field(default=None, compare=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "remaining": self.remaining,
            "status": self.status,
            "delay_seconds": self.delay_seconds,
            "retry_after": self.retry_after,
        }


class FaultQueue:
    """Faults per endpoint, first in first out. Not locked itself: the store holds the lock."""

    def __init__(self) -> None:
        self._queues: dict[FaultEndpoint, deque[Fault]] = {"token": deque(), "me": deque()}

    def add(self, endpoint: FaultEndpoint, fault: Fault) -> None:
        self._queues[endpoint].append(fault)

    def take(self, endpoint: FaultEndpoint) -> Fault | None:
        queue = self._queues[endpoint]
        if not queue:
            return None
        fault = queue[0]
        if fault.remaining <= 1:
            queue.popleft()
        else:
            queue[0] = replace(fault, remaining=fault.remaining - 1)
        return fault

    def pending(self) -> dict[str, list[dict[str, Any]]]:
        return {endpoint: [fault.as_json() for fault in queue] for endpoint, queue in self._queues.items()}


async def apply_fault(fault: Fault, endpoint: FaultEndpoint, request: Request) -> Response | None:
    """Play a fault. None means: go on and answer normally (after the delay, if any)."""
    if fault.kind == "truncate":
        return None  # processed normally; `damaged` then cuts the answer
    if fault.kind in ("timeout", "delay"):
        # Real time, not the fake clock: the point is to make the client's own timeout fire.
        # The call is then processed anyway, like a request that reached Allegro but whose answer
        # was lost: a refresh still rotates the token.
        await asyncio.sleep(fault.delay_seconds)
        return None
    if fault.kind == "hold":
        await _until_released(fault)
        return None
    if fault.kind == "reset":
        await _drop_connection(request)
        # Only reached over real HTTP, where the connection is already gone and uvicorn drops this.
        return Response(status_code=500)
    return _status_response(fault, endpoint)


async def _until_released(fault: Fault) -> None:
    """Until the test releases held calls, at most `delay_seconds` (a forgotten release cannot hang
    a test). Polled: the release is served by whichever thread and event loop the control call gets."""
    assert fault.gate is not None  # noqa: S101 - the controls give every hold fault its gate
    deadline = time.monotonic() + fault.delay_seconds
    while True:
        if fault.gate.is_set() or time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.01)


def damaged(fault: Fault | None, response: Response) -> Response:
    """A "truncate" fault: the call was processed (a refresh did rotate), but the answer arrives cut off
    halfway through its body, as when a proxy drops the end of a response."""
    if fault is None or fault.kind != "truncate":
        return response
    body = bytes(response.body)
    headers = {
        k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")
    }
    return Response(
        body[: len(body) // 2],
        status_code=response.status_code,
        media_type=response.media_type,
        headers=headers,
    )


def _status_response(fault: Fault, endpoint: FaultEndpoint) -> Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    status = fault.status
    if status == 429:
        if endpoint == "token":
            body: dict[str, Any] = {
                "error": "token_creation_rate_limit_exceeded",
                "error_description": "Token creation rate limit exceeded. Try again later.",
            }
            return json_response(status, body, OAUTH_JSON, headers)
        body = {"errors": [_api_error("TooManyRequestsException", "Too many requests")]}
        return json_response(status, body, ALLEGRO_JSON, headers)
    if status in (502, 503, 504):
        # What a load balancer in front of Allegro answers: HTML, not JSON.
        html = _SERVER_ERROR_HTML.format(status=status, phrase=HTTPStatus(status).phrase)
        return Response(html, status_code=status, media_type="text/html", headers=headers)
    if endpoint == "token":
        body = {"error": "server_error", "error_description": "Internal Server Error"}
        return json_response(status, body, OAUTH_JSON, headers)
    body = {"errors": [_api_error("InternalServerErrorException", "Internal Server Error")]}
    return json_response(status, body, ALLEGRO_JSON, headers)


def _api_error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "details": None, "path": None, "userMessage": message}


async def _drop_connection(request: Request) -> None:
    """Close the TCP connection without an answer.

    Over uvicorn the transport is aborted, which the client sees as "server disconnected without
    sending a response". In-process (httpx.ASGITransport) there is no connection, so the closest thing
    is to raise the very error httpx raises for a dropped connection; ASGITransport re-raises it to the
    caller.
    """
    cycle = request.scope.get(CONNECTION_SCOPE_KEY)
    # Duck-typed: uvloop's transports are not asyncio.Transport instances.
    abort = getattr(getattr(cycle, "transport", None), "abort", None)
    if not callable(abort):
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    abort()
    # connection_lost runs on a later loop turn; once it has, uvicorn ignores whatever the app sends.
    for _ in range(100):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0)


def connection_of(send: Any) -> Any:
    """uvicorn's request/response object behind its `send`, or None when not served by uvicorn."""
    return getattr(send, "__self__", None)
