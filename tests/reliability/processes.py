"""`allegro-link serve` as a real subprocess that a test may SIGKILL or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from allegro_link.settings import Settings
from tests.support.live import START_TIMEOUT, free_port


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment `allegro-link serve` reads `settings` from (and nothing else of ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLEGRO_LINK_")}
    for name, raw in settings.model_dump().items():
        if raw is None:
            continue
        value = raw.get_secret_value() if hasattr(raw, "get_secret_value") else raw
        env[f"ALLEGRO_LINK_{name.upper()}"] = (
            ",".join(map(str, value)) if isinstance(value, list) else str(value)
        )
    env["ALLEGRO_LINK_KEEPALIVE_ENABLED"] = "false"
    env.update(extra)
    return env


@dataclass
class ServiceProcess:
    process: asyncio.subprocess.Process
    url: str
    log_path: str

    @property
    def pid(self) -> int:
        return self.process.pid

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no rollback by the process itself."""
        if self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    def terminate(self) -> None:
        if self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGTERM)

    async def wait_exit(self, within: float) -> int:
        async with asyncio.timeout(within):
            return await self.process.wait()

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()


@asynccontextmanager
async def serve_process(settings: Settings, **extra_env: str) -> AsyncIterator[ServiceProcess]:
    """Start `allegro-link serve` on a free port; stop it (SIGTERM, then SIGKILL) when the block ends."""
    port = free_port()
    log_fd, log_path = tempfile.mkstemp(prefix="allegro-link-serve-", suffix=".log")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "allegro_link.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=service_env(settings, **extra_env),
        stdout=log_fd,
        stderr=subprocess.STDOUT,
    )
    os.close(log_fd)
    found = ServiceProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                assert process.returncode is None, f"the service exited:\n{found.log()[-2000:]}"
                try:
                    if (await http.get(f"{found.url}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the service did not become ready"
                await asyncio.sleep(0.1)
        yield found
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        os.unlink(log_path)
