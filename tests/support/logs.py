"""Capturing what the service logs, as `serve` configures it, and putting logging back afterwards."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from allegro_link.logs import configure_logging


@contextmanager
def captured_logs(level: str = "INFO") -> Iterator[io.StringIO]:
    """Every log line (JSON, redacted) written while inside goes to the yielded stream."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    sink = io.StringIO()
    configure_logging(level, json=True, stream=sink)
    try:
        yield sink
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
