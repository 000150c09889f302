"""Pure ASGI middleware: request ids, access log without query strings, metrics, input guards.

Written against raw ASGI (not BaseHTTPMiddleware) because it wraps every request on the token path.
The access log names the client (its address, taken from X-Forwarded-For only when the peer is a
configured trusted proxy) and the caller (set by the auth dependency once credentials are verified),
so that failed and refused attempts can be attributed.
"""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allegro_link.errors import problem_response
from allegro_link.ops.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
_NUL = re.compile(rb"%00|\x00")
MAX_BODY_BYTES = 64 * 1024
# uvicorn's httptools parser accepts headers of any size; nothing we serve needs more than this (an
# owner JWT is the largest header, and 8 KB is its own limit in auth/deps.py).
MAX_HEADER_BYTES = 16 * 1024

# Where auth/deps.py leaves who the verified caller is (`owner:ID` or `service:KEY NAME`).
CALLER_SCOPE_KEY = "allegro_link.caller"
FORWARDED_FOR_HEADER = b"x-forwarded-for"
_MAX_ADDRESS_LENGTH = 45  # the longest textual IPv6 address

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

log = structlog.get_logger("allegro_link.http")

# Requests whose success is logged at DEBUG only. Every token handed out is already recorded in the
# token audit table (caller, account, time) and counted in the request metrics, and internal services
# ask for one before each call to Allegro: an INFO line each would be nearly all of the log volume,
# and a cost on the busiest endpoint. Their failures are logged like any other request's.
QUIET_WHEN_SUCCESSFUL = frozenset({("GET", "/accounts/{account_id}/token")})


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int = MAX_BODY_BYTES,
        trusted_proxies: Sequence[IPNetwork] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.client_addresses = ClientAddresses(trusted_proxies)
        # prometheus_client's `labels()` validates and locks on every call; label sets are few (route
        # templates, not paths), so each one's children are looked up once and kept.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        header_value = request_id.encode()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, header_value)]
            await send(message)

        try:
            rejection = _reject_input(scope, self.max_body_bytes)
            if rejection is not None:
                await rejection(scope, receive, send_with_id)
            else:
                await self.app(scope, _limit_body(receive, self.max_body_bytes), send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            counter, histogram = self._metric_children(method, route, status)
            counter.inc()
            histogram.observe(elapsed)
            quiet = status < 400 and (method, route) in QUIET_WHEN_SUCCESSFUL
            (log.debug if quiet else log.info)(
                "http.request",
                method=method,
                route=route,
                path=scope["path"][:200],
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                client=self.client_addresses.of(scope),
                caller=scope.get(CALLER_SCOPE_KEY),
            )
            structlog.contextvars.clear_contextvars()

    def _metric_children(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(method, route, str(status)),
                self.metrics.request_seconds.labels(method, route),
            )
            self._children[key] = children
        return children


class BodyTooLarge(Exception):
    pass


class ClientAddresses:
    """The client's address: the peer's, or, behind trusted proxies, the nearest untrusted hop.

    X-Forwarded-For is read right to left (each proxy appends the address it saw), skipping trusted
    proxies; the first untrusted address is the client. Anything left of it was written by the client
    itself and is ignored. Without trusted proxies the header is never read.
    """

    _CACHE_LIMIT = 4096

    def __init__(self, trusted: Sequence[IPNetwork]) -> None:
        self._trusted = tuple(trusted)
        # address → trusted (True/False), or None when it is not an IP address. Parsing an address
        # costs microseconds, and the same proxies and clients come back request after request.
        self._verdicts: dict[str, bool | None] = {}

    def of(self, scope: Scope) -> str | None:
        client = scope.get("client")
        peer: str | None = client[0] if client else None
        if not self._trusted or peer is None or not self._verdict(peer):
            return peer
        hops = b",".join(value for name, value in scope["headers"] if name == FORWARDED_FOR_HEADER)
        nearest = peer
        for raw in reversed(hops.split(b",")):
            hop = raw.strip().decode("latin-1")[:_MAX_ADDRESS_LENGTH]
            if not hop:
                continue
            verdict = self._verdict(hop)
            if verdict is None:
                return nearest  # a trusted proxy writes addresses: what follows is not to be believed
            if not verdict:
                return hop
            nearest = hop
        return nearest

    def _verdict(self, address: str) -> bool | None:
        if address in self._verdicts:
            return self._verdicts[address]
        verdict: bool | None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            verdict = None
        else:
            verdict = any(ip in network for network in self._trusted)
        if len(self._verdicts) >= self._CACHE_LIMIT:
            self._verdicts.clear()  # bounded: clients cannot grow it without limit
        self._verdicts[address] = verdict
        return verdict


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(value):
            return str(value.decode())
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Unmatched paths share one label: raw paths would let a client blow up label cardinality.
    return path if isinstance(path, str) else "unmatched"


def _reject_input(scope: Scope, max_body_bytes: int) -> Any:
    raw_path = scope.get("raw_path") or scope["path"].encode()
    if _NUL.search(raw_path) or _NUL.search(scope.get("query_string", b"")):
        return problem_response(400, "bad_request", "Bad request", "NUL bytes are not accepted.")
    header_bytes = 0
    for name, value in scope["headers"]:
        header_bytes += len(name) + len(value)
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return problem_response(400, "bad_request", "Bad request", "Invalid Content-Length.")
            if length > max_body_bytes:
                return problem_response(
                    413,
                    "payload_too_large",
                    "Request body too large",
                    f"Bodies are limited to {max_body_bytes} bytes.",
                )
    if header_bytes > MAX_HEADER_BYTES:
        return problem_response(
            431,
            "headers_too_large",
            "Request header fields too large",
            f"Headers are limited to {MAX_HEADER_BYTES} bytes in all.",
        )
    return None


def _limit_body(receive: Receive, max_body_bytes: int) -> Receive:
    """Guard chunked bodies that announce no length."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_body_bytes:
                raise BodyTooLarge
        return message

    return limited
