"""The one harness for the servers that tests, the bench and the soak start on 127.0.0.1.

Four steps, each done one way: the environment a child gets (`child_env`, `settings_env`), starting it
(`spawn` a subprocess, or `serve_in_thread` for an ASGI app), waiting until it answers (`wait_ready`),
and stopping it (`ServerProcess.stop`: SIGTERM, then SIGKILL). `Processes` keeps the subprocesses of
one run and stops them all at the end.

Everything here blocks. Async callers run the waits with `asyncio.to_thread`: a server they start may
need their event loop while it starts or stops (a proxy a test runs in front of PostgreSQL, say).

Why in the package (see also `allegro_link.devtools`): tests/, bench/ and scripts/ all run from the
repository root with the package installed editable, and each with its own `sys.path` (pytest adds the
root, `python bench/run.py` adds bench/, `python scripts/soak.py` scripts/), so the package is the one
home all three import without path edits. Only the standard library is imported at import time.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

HOST = "127.0.0.1"
# How long a server may take to answer after it is started. A bound for failing, not a wait: it costs
# nothing when the server is quick. On the shared 2-core CI machine under load (load average above 30)
# merely importing the app took 35 s of wall clock for 1.5 s of CPU.
START_TIMEOUT = 120.0
# From SIGTERM to SIGKILL: a graceful shutdown finishes the requests in flight first.
STOP_TIMEOUT = 20.0
POLL_SECONDS = 0.1
PROBE_TIMEOUT = 5.0  # one readiness request; a loaded machine answered /readyz in over 2 s
# uvicorn closes a connection idle for 5 s by default. A client that sends on its pooled connection just
# as the server closes it gets httpx.ReadError (seen when a slow step left a test's client idle about
# that long). Nothing these servers answer idles this long; a caller may pass its own.
KEEP_ALIVE_SECONDS = 600


class NotReady(RuntimeError):
    """A server did not answer (or stop) in time, or its process exited first."""


# -- ports ------------------------------------------------------------------------------------------

# The sockets that keep the latest ports from free_port() reserved (see there); the oldest are closed.
_reservations: deque[socket.socket] = deque()
RESERVED_PORTS = 64  # far more than one test or run starts servers on


def free_port() -> int:
    """A port on 127.0.0.1 that stays free for a server the caller starts on it later.

    The port is chosen by binding to port 0, and that socket stays bound (never listening): a port
    given back at once could be taken before the server binds it (seconds later on a loaded machine,
    after its lifespan start-up), by another xdist worker's free_port() or by any outgoing connection's
    ephemeral port. Our servers can still bind it, because both sockets set SO_REUSEADDR (uvicorn and
    asyncio's create_server do, in threads and subprocesses) and Linux lets such sockets share a port
    while none listens.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port: int = sock.getsockname()[1]
    _reservations.append(sock)
    while len(_reservations) > RESERVED_PORTS:
        _reservations.popleft().close()
    return port


def base_url(port: int) -> str:
    return f"http://{HOST}:{port}"


# -- environment ------------------------------------------------------------------------------------


def child_env(variables: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ALLEGRO_LINK_* variable, plus `variables`.

    A developer's shell may point at a real deployment: a child gets only the settings it is given.
    """
    from allegro_link.settings import ENV_PREFIX

    env = {name: value for name, value in os.environ.items() if not name.upper().startswith(ENV_PREFIX)}
    env.update(variables or {})
    return env


def settings_env(settings: BaseSettings) -> dict[str, str]:
    """The variables (with the settings class's own prefix) from which a child reads `settings`."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    env: dict[str, str] = {}
    for name, raw in settings.model_dump().items():
        if raw is None:
            continue
        value = raw.get_secret_value() if hasattr(raw, "get_secret_value") else raw
        env[f"{prefix}{name}".upper()] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return env


# -- commands ---------------------------------------------------------------------------------------


def cli_argv(*args: str, src: Path | None = None) -> list[str]:
    """`allegro-link ARGS` in this interpreter; from another source tree `src` (e.g. the code before a
    change) if given."""
    # -P: the caller's working directory stays off the child's sys.path (the bench runs its servers
    # from bench/, whose modules have names like `common` and `report`), as with the console script.
    if src is None:
        return [sys.executable, "-P", "-m", "allegro_link.cli", *args]
    bootstrap = (
        f"import sys; sys.path.insert(0, {str(src)!r}); from allegro_link.cli import main; sys.exit(main())"
    )
    return [sys.executable, "-P", "-c", bootstrap, *args]


def serve_argv(port: int, *, src: Path | None = None) -> list[str]:
    """`allegro-link serve` on 127.0.0.1:`port`."""
    return cli_argv("serve", "--host", HOST, "--port", str(port), src=src)


def run_cli(*args: str, env: Mapping[str, str]) -> str:
    """Run `allegro-link ARGS` to its end; returns what it printed. Raises with its stderr if it fails."""
    completed = subprocess.run(  # noqa: S603 - our own CLI in this interpreter
        cli_argv(*args), env=dict(env), capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"allegro-link {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed.stdout


# -- waiting ----------------------------------------------------------------------------------------


def wait_ready(
    url: str, *, within: float = START_TIMEOUT, process: subprocess.Popen[bytes] | None = None
) -> float:
    """Poll `url` until it answers 200; returns the seconds that took.

    `within` bounds a failure (NotReady), as does `process` exiting first; a quick server costs nothing.
    """
    started = time.monotonic()
    while True:
        if process is not None and process.poll() is not None:
            raise NotReady(f"the process exited ({process.returncode}) before {url} answered")
        if _answers_200(url):
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise NotReady(f"{url} did not answer 200 within {within:g} s")
        time.sleep(POLL_SECONDS)


def _answers_200(url: str) -> bool:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=PROBE_TIMEOUT)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


# -- subprocesses -----------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server started by `spawn`: its process, base URL and log (stdout and stderr)."""

    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, path: str = "/readyz", *, within: float = START_TIMEOUT) -> float:
        """Seconds until `path` answers 200; NotReady (with the end of the log) if it does not in time."""
        try:
            return wait_ready(self.url + path, within=within, process=self.popen)
        except NotReady as exc:
            raise NotReady(f"{self.name}: {exc}\n{self.log()[-2000:]}") from None

    def terminate(self) -> None:
        """SIGTERM: a graceful shutdown; `wait_exit` waits for its end."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no rollback by the process itself."""
        if self.running():
            self.popen.kill()
            self.popen.wait()

    def wait_exit(self, within: float) -> int:
        """The exit status (the signal's number, negated, if a signal ended it); TimeoutExpired after
        `within` seconds."""
        return self.popen.wait(timeout=within)

    def stop(self, within: float = STOP_TIMEOUT) -> None:
        """SIGTERM, and SIGKILL if the process has not ended `within` seconds later."""
        self.terminate()
        self.reap(within)

    def reap(self, within: float = STOP_TIMEOUT) -> None:
        """Wait for the end of a process told to stop (never a second SIGTERM: uvicorn would take it
        as "exit now"); SIGKILL after `within` seconds."""
        try:
            self.popen.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.kill()


def spawn(
    name: str,
    argv: list[str],
    *,
    port: int,
    env: Mapping[str, str],
    log_dir: Path,
    cwd: Path | None = None,
) -> ServerProcess:
    """Start a server that will listen on 127.0.0.1:`port`, its output in a new file in `log_dir`.

    It gets a session of its own: Ctrl-C in a terminal reaches the caller alone, which stops its
    servers in order (the bench, say, before it drops its database).
    """
    fd, log_path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=log_dir)
    with os.fdopen(fd, "wb") as log:
        popen = subprocess.Popen(  # noqa: S603 - argv is the caller's: our CLI or an app of this repository
            argv, env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return ServerProcess(name, popen, base_url(port), Path(log_path))


@dataclass
class Processes:
    """The servers one run starts; `close()` (or the end of a `with` block) stops those still running."""

    log_dir: Path
    cwd: Path | None = None
    started: list[ServerProcess] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], *, port: int, env: Mapping[str, str]) -> ServerProcess:
        """Start a server without waiting for it (to start several at once)."""
        process = spawn(name, argv, port=port, env=env, log_dir=self.log_dir, cwd=self.cwd)
        self.started.append(process)
        return process

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        port: int,
        env: Mapping[str, str],
        ready_path: str = "/readyz",
        within: float = START_TIMEOUT,
    ) -> ServerProcess:
        """Start a server and wait until `ready_path` answers 200."""
        process = self.spawn(name, argv, port=port, env=env)
        process.wait_ready(ready_path, within=within)
        return process

    def stop(self, process: ServerProcess) -> None:
        process.stop()
        if process in self.started:
            self.started.remove(process)

    def close(self) -> None:
        """Stop every server still running, all at once (each one's shutdown is bounded)."""
        for process in reversed(self.started):
            process.terminate()
        for process in reversed(self.started):
            process.reap()
        self.started.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


# -- in a thread ------------------------------------------------------------------------------------


@contextmanager
def serve_in_thread(app: Any, port: int | None = None, **options: Any) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 until the block ends; yields its base URL. `options` go to uvicorn."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=HOST,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            **{"timeout_keep_alive": KEEP_ALIVE_SECONDS, **options},
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise NotReady("a server in a thread did not start")
        time.sleep(0.02)
    try:
        yield base_url(port)
    finally:
        server.should_exit = True
        # Wait for the whole stop (in-flight requests, then the app's shutdown): a server still running
        # would go on using the database into whatever runs next (the next test, on the same database).
        thread.join(timeout=START_TIMEOUT)
        if thread.is_alive():
            raise NotReady("a server in a thread did not stop")
