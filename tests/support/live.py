"""Real HTTP servers on 127.0.0.1 for end-to-end tests: uvicorn in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from asgi_lifespan import LifespanManager

# How long a server the tests start (in a thread or as a subprocess) may take to answer. A bound for
# failing, not a wait: it costs nothing when the server is quick. On the shared 2-core CI machine under
# load (load average above 30) merely importing the app took 35 s of wall clock for 1.5 s of CPU.
START_TIMEOUT = 120.0
# The same for one request of a test's own HTTP client where the service calls the fake Allegro on the
# way (httpx's default of 5 s was overrun by a callback on a loaded machine).
REQUEST_TIMEOUT = 60.0
KEEP_ALIVE_SECONDS = 600


# The sockets that keep the latest ports from free_port() reserved (see there); the oldest are closed.
_reservations: deque[socket.socket] = deque()
RESERVED_PORTS = 64  # far more than one test starts servers on


def free_port() -> int:
    """A port on 127.0.0.1 that stays free for a server the caller starts on it later.

    The port is chosen by binding to port 0, and that socket stays bound (never listening): a port
    given back at once could be taken before the server binds it (seconds later on a loaded machine,
    after its lifespan start-up), by another xdist worker's free_port() or by any outgoing connection's
    ephemeral port. Our servers can still bind it, because both sockets set SO_REUSEADDR (uvicorn
    does, in threads and subprocesses) and Linux lets such sockets share a port while none listens.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    _reservations.append(sock)
    while len(_reservations) > RESERVED_PORTS:
        _reservations.popleft().close()
    return port


@contextmanager
def serve_in_thread(app: Any, port: int | None = None, **options: Any) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 until the block ends; yields its base URL. `options` go to uvicorn."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            # uvicorn closes a connection idle for 5 s by default. A test's client that sends on its
            # pooled connection just as the server closes it gets httpx.ReadError (seen when a slow
            # step left the client idle about that long). No test idles this long.
            # A test that passes its own (the slow-client tests do) overrides it.
            **{"timeout_keep_alive": KEEP_ALIVE_SECONDS, **options},
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def lifespan(app: Any) -> LifespanManager:
    """asgi-lifespan's manager with start-up and shutdown bounds for a loaded machine (its own are 5 s:
    an app stopping its sequencer, webhook workers, LISTEN connection and loops ran past that once)."""
    return LifespanManager(app, startup_timeout=START_TIMEOUT, shutdown_timeout=START_TIMEOUT)
