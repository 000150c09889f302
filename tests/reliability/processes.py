"""`allegro-link serve` as a real subprocess that a test may SIGKILL or SIGTERM, started and stopped by
the harness the bench and the soak use too (`allegro_link.devtools.processes`)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from allegro_link.devtools.processes import (
    ServerProcess,
    child_env,
    free_port,
    serve_argv,
    settings_env,
    spawn,
)
from allegro_link.settings import ENV_PREFIX, Settings


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment `allegro-link serve` reads `settings` from (and nothing else of ours)."""
    return child_env({**settings_env(settings), f"{ENV_PREFIX}KEEPALIVE_ENABLED": "false", **extra})


@asynccontextmanager
async def serve_process(settings: Settings, **extra_env: str) -> AsyncIterator[ServerProcess]:
    """Start `allegro-link serve` on a free port; stop it (SIGTERM, then SIGKILL) when the block ends.

    The waits run in a thread: the service may need this event loop meanwhile (a test's proxy).
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="allegro-link-serve-") as logs:
        process = spawn(
            "serve", serve_argv(port), port=port, env=service_env(settings, **extra_env), log_dir=Path(logs)
        )
        try:
            await asyncio.to_thread(process.wait_ready)
            yield process
        finally:
            await asyncio.to_thread(process.stop)
