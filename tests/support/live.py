"""Real HTTP servers on 127.0.0.1 for end-to-end tests: the harness the bench and the soak use too
(`allegro_link.devtools.processes`), and an ASGI lifespan with bounds for a loaded machine."""

from __future__ import annotations

from typing import Any

from asgi_lifespan import LifespanManager

from allegro_link.devtools.processes import START_TIMEOUT, free_port, serve_in_thread

# How long one request of a test's own HTTP client may take to fail where the service calls the fake
# Allegro on the way (httpx's default of 5 s was overrun by a callback on a loaded machine). A bound for
# failing, not a wait, like START_TIMEOUT.
REQUEST_TIMEOUT = 60.0

__all__ = ["REQUEST_TIMEOUT", "START_TIMEOUT", "free_port", "lifespan", "serve_in_thread"]


def lifespan(app: Any) -> LifespanManager:
    """asgi-lifespan's manager with start-up and shutdown bounds for a loaded machine (its own are 5 s:
    an app stopping its sequencer, webhook workers, LISTEN connection and loops ran past that once)."""
    return LifespanManager(app, startup_timeout=START_TIMEOUT, shutdown_timeout=START_TIMEOUT)
