"""uvicorn's HTTP protocol with deadlines for reading a request, so slow clients cannot hold connections.

uvicorn bounds only the idle time *between* requests (`timeout_keep_alive`, armed after a response). A
connection that sends nothing at all, a request whose headers come a byte every few seconds, or a body
that never arrives is waited for forever, holding a socket and a slot of `limit_concurrency` each. No
ASGI middleware can help with the headers (the app is called only once they are complete), so the
deadlines live here, in a subclass of uvicorn's httptools protocol, using its parser callbacks:

- headers: from the moment the connection waits for a request (accepted, or the previous response
  sent) until the request's headers are complete, at most `header_timeout` seconds;
- body: from the complete headers until the complete body, at most `body_timeout` seconds.

On a missed header deadline the client gets a 408 (when it had begun a request) and the connection is
closed; on a missed body deadline the connection is closed and the app sees `http.disconnect`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from allegro_link.errors import PROBLEM_CONTENT_TYPE, problem_type

log = structlog.get_logger("allegro_link.http")

_TIMEOUT_BODY = json.dumps(
    {
        "type": problem_type("request_timeout"),
        "title": "Request timeout",
        "status": 408,
        "detail": "The request was not received in time.",
        "code": "request_timeout",
    }
).encode()
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    + f"content-type: {PROBLEM_CONTENT_TYPE}\r\n".encode()
    + f"content-length: {len(_TIMEOUT_BODY)}\r\n".encode()
    + b"connection: close\r\n\r\n"
    + _TIMEOUT_BODY
)


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """Given to uvicorn as `http=`, with the timeouts bound by functools.partial (server.py)."""

    def __init__(self, *args: Any, header_timeout: float, body_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._body_timeout = body_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._request_begun = False

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        log.warning("http.read_timeout", phase=phase, client=self.client[0] if self.client else None)
        if phase == "headers" and self._request_begun:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._header_timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True
        if self._deadline is None:  # a request pipelined behind one still being answered
            self._arm(self._header_timeout, "headers")

    def on_headers_complete(self) -> None:
        self._arm(self._body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._request_begun = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        # Waiting for the next request now (the keep-alive timeout also runs); a pipelined one was
        # read already, and a body still arriving keeps its own deadline.
        if not pipelined and self._deadline is None and not self.transport.is_closing():
            self._arm(self._header_timeout, "headers")
