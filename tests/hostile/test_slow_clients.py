"""Slow clients are cut off: headers and bodies have read deadlines, connections a ceiling per process.

Over real sockets against the app served by uvicorn with the options `serve` uses.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from allegro_link.app import create_app
from allegro_link.server import connection_limits
from allegro_link.settings import Settings
from tests.support.live import serve_in_thread

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
# How long a test keeps trickling before it concludes the server never cut it off: far past the bound.
GIVE_UP_AFTER = 30.0
TRICKLE_EVERY = 0.2


def _serve(settings: Settings, **changes: object) -> Iterator[tuple[str, int]]:
    limited = settings.model_copy(
        update={
            "http_header_timeout_seconds": HEADER_TIMEOUT,
            "http_body_timeout_seconds": BODY_TIMEOUT,
            **changes,
        }
    )
    with serve_in_thread(create_app(limited), **connection_limits(limited)) as url:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        yield parts.hostname, parts.port


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[str, int]]:
    yield from _serve(settings)


def _connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=GIVE_UP_AFTER)


def _trickle_until_closed(sock: socket.socket, pieces: Iterator[bytes]) -> bytes:
    """Send a piece every TRICKLE_EVERY seconds until the server closes; returns what it answered."""
    sock.settimeout(TRICKLE_EVERY)
    answer = b""
    started = time.monotonic()
    while time.monotonic() - started < GIVE_UP_AFTER:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            try:
                sock.sendall(next(pieces))
            except (BrokenPipeError, ConnectionResetError):
                return answer
            continue
        except ConnectionResetError:
            return answer
        if not chunk:
            return answer
        answer += chunk
    pytest.fail(f"still connected after {GIVE_UP_AFTER} s of trickling")


def _endless_headers() -> Iterator[bytes]:
    n = 0
    while True:
        n += 1
        yield f"X-Slow-{n}: y\r\n".encode()


class TestSlowClients:
    def test_trickled_headers_are_cut_off_with_a_408(self, server: tuple[str, int]) -> None:
        with _connect(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            answer = _trickle_until_closed(sock, _endless_headers())
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"application/problem+json" in answer
        assert b'"code": "request_timeout"' in answer

    def test_a_connection_that_sends_nothing_is_closed(self, server: tuple[str, int]) -> None:
        with _connect(server) as sock:
            assert sock.recv(4096) == b""  # closed by the server, no answer to no request

    def test_a_body_that_never_arrives_is_cut_off(self, server: tuple[str, int]) -> None:
        with _connect(server) as sock:
            sock.sendall(
                b"POST /accounts/authorize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            _trickle_until_closed(sock, iter(lambda: b" ", None))

    def test_a_normal_client_is_unaffected(self, server: tuple[str, int]) -> None:
        host, port = server
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=GIVE_UP_AFTER) as client:
            # One keep-alive connection used for longer than either deadline, requests spread out.
            for _ in range(4):
                response = client.get("/healthz")
                assert response.status_code == 200
                time.sleep(HEADER_TIMEOUT / 2)
            response = client.post("/accounts/authorize", json={"return_to": "https://x.example/"})
            assert response.status_code == 401  # the body was read; no owner token was sent

    def test_headers_sent_in_pieces_within_the_bound_are_fine(self, server: tuple[str, int]) -> None:
        with _connect(server) as sock:
            for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n\r\n"):
                sock.sendall(piece)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")


class TestConnectionCeiling:
    @pytest.fixture
    def small_server(self, settings: Settings) -> Iterator[tuple[str, int]]:
        # Deadlines far away: only the ceiling is under test here.
        yield from _serve(
            settings,
            http_max_connections=3,
            http_header_timeout_seconds=GIVE_UP_AFTER * 2,
            http_keepalive_timeout_seconds=GIVE_UP_AFTER * 2,
        )

    def test_at_the_ceiling_a_process_answers_503(self, small_server: tuple[str, int]) -> None:
        # uvicorn refuses a request when the open connections, its own included, reach the ceiling.
        host, port = small_server
        holders = [httpx.Client(base_url=f"http://{host}:{port}", timeout=GIVE_UP_AFTER) for _ in range(2)]
        try:
            for holder in holders:  # each keeps its connection open after a request
                assert holder.get("/healthz").status_code == 200
            with httpx.Client(base_url=f"http://{host}:{port}", timeout=GIVE_UP_AFTER) as third:
                assert third.get("/healthz").status_code == 503
        finally:
            for holder in holders:
                holder.close()
