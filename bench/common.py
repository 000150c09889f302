"""Plumbing for the benchmark: a throw-away database, the service's settings, wrk, /proc readings.

Everything listens on 127.0.0.1. Servers are started and stopped by the harness the tests and the soak
use too (`allegro_link.devtools.processes`); every one is stopped by `Processes.close()`, and the
database is dropped by `BenchDatabase.drop()`; `run.py` calls both from `finally`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from allegro_link.demo.owner_token import OwnerTokenMinter
from allegro_link.devtools.processes import HOST, ServerProcess, child_env, run_cli

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
# The PostgreSQL server the bench creates its database on (trust auth on this machine).
PG_SERVER_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

CLIENT_ID = "allegro-link-bench"
CLIENT_SECRET = "allegro-link-bench-secret"  # noqa: S105 - valid only on the fake Allegro
OWNER_JWT_SECRET = "bench-owner-jwt-secret-0123456789-abcdef"  # noqa: S105 - bench only
RETURN_ALLOWLIST = "https://panel.example.com/allegro/"
OWNER_JWT_LIFETIME_SECONDS = 24 * 3600


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- database ---------------------------------------------------------------------------------------


@dataclass
class BenchDatabase:
    name: str
    server_dsn: str = PG_SERVER_URL

    @classmethod
    def create(cls) -> BenchDatabase:
        name = f"allegro_link_bench_{os.getpid()}_{secrets.token_hex(3)}"
        db = cls(name)
        db._admin(f'CREATE DATABASE "{name}"')
        return db

    @property
    def dsn(self) -> str:
        """asyncpg DSN of the bench database."""
        base, _, _ = self.server_dsn.rpartition("/")
        return f"{base}/{self.name}"

    @property
    def sqlalchemy_url(self) -> str:
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        async def run() -> None:
            connection = await asyncpg.connect(self.server_dsn)
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

        asyncio.run(run())


def service_env(database_url: str, fake_url: str, redirect_uri: str) -> dict[str, str]:
    """`allegro-link serve` with production settings: JSON logs at INFO, keep-alive on, defaults."""
    key = base64.b64encode(b"b" * 32).decode()
    return child_env(
        {
            "ALLEGRO_LINK_DATABASE_URL": database_url,
            "ALLEGRO_LINK_ENCRYPTION_KEYS": f"bench1:{key}",
            "ALLEGRO_LINK_CLIENT_ID": CLIENT_ID,
            "ALLEGRO_LINK_CLIENT_SECRET": CLIENT_SECRET,
            "ALLEGRO_LINK_REDIRECT_URI": redirect_uri,
            "ALLEGRO_LINK_ALLEGRO_AUTH_URL": fake_url,
            "ALLEGRO_LINK_ALLEGRO_API_URL": fake_url,
            "ALLEGRO_LINK_RETURN_URL_ALLOWLIST": RETURN_ALLOWLIST,
            "ALLEGRO_LINK_OWNER_JWT_SECRET": OWNER_JWT_SECRET,
            "ALLEGRO_LINK_LOG_LEVEL": "INFO",
            "ALLEGRO_LINK_LOG_JSON": "true",
        }
    )


def fake_env(env: dict[str, str], redirect_uri: str) -> dict[str, str]:
    """`allegro-link fake-allegro` knowing the bench's client (`env`: the service's)."""
    return {
        **env,
        "ALLEGRO_LINK_FAKE_CLIENT_ID": CLIENT_ID,
        "ALLEGRO_LINK_FAKE_CLIENT_SECRET": CLIENT_SECRET,
        "ALLEGRO_LINK_FAKE_REDIRECT_URIS": redirect_uri,
    }


def migrate_and_create_key(env: dict[str, str], name: str, *scopes: str) -> str:
    """Migrate the service's database and create an API key with `scopes`; returns the key."""
    run_cli("migrate", env=env)
    created = run_cli(
        "api-keys", "create", "--name", name, *(f"--scope={scope}" for scope in scopes), env=env
    )
    return created.strip().splitlines()[-1]


def owner_jwt(owner_id: str) -> str:
    return OwnerTokenMinter(OWNER_JWT_SECRET).mint(owner_id, OWNER_JWT_LIFETIME_SECONDS).token


# -- processes --------------------------------------------------------------------------------------


def status_kb(process: ServerProcess, field_name: str) -> int:
    """A `VmRSS`/`VmHWM` reading from /proc, in KiB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(process: ServerProcess) -> float:
    try:
        parts = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / ticks


def app_argv(module: str, port: int) -> list[str]:
    """A reference app of bench/ (`floor_app`, `baseline_app`) under the same uvicorn as `allegro-link
    serve` (loop and http "auto": uvloop and httptools), one process."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"{module}:create_app",
        "--factory",
        "--app-dir",
        str(BENCH_DIR),
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--no-server-header",
    ]


def static_argv(port: int) -> list[str]:
    return [sys.executable, str(BENCH_DIR / "static_server.py"), str(port)]


def temp_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="allegro-link-bench-"))


# -- wrk --------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk is missing: installing it with apt-get")
    _apt_get("install", "-y", "-qq", "wrk", check=False)
    found = shutil.which("wrk")
    if not found:
        _apt_get("update", "-qq")
        _apt_get("install", "-y", "-qq", "wrk")
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk could not be installed")
    return found


def _apt_get(*args: str, check: bool = True) -> None:
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise RuntimeError("wrk is missing, and there is no apt-get to install it with")
    subprocess.run([apt_get, *args], check=check)  # noqa: S603 - Debian's apt-get, fixed arguments


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int  # socket errors, timeouts and non-2xx/3xx answers
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    wrk_cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def run_wrk(
    base_url: str,
    requests_file: Path,
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
) -> WrkResult:
    """A closed-loop wrk run over keep-alive connections; requests cycle through `requests_file`.

    Each line of the file is `path<TAB>bearer credential`; every wrk connection starts at a random line.
    """
    wrk = ensure_wrk()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(  # noqa: S603 - wrk with our own arguments
        [
            wrk,
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH_DIR / "requests.lua"),
            base_url,
            "--",
            str(requests_file),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = next(
        json.loads(line) for line in completed.stdout.splitlines() if line.startswith('{"requests"')
    )
    errors = sum(
        summary[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return WrkResult(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        errors=errors,
        p50_ms=summary["p50_us"] / 1000,
        p90_ms=summary["p90_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
        wrk_cpu_seconds=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    )


@dataclass(frozen=True)
class Series:
    """Repetitions of one measurement; medians are what the report quotes."""

    runs: list[WrkResult]

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    def as_json(self) -> dict[str, Any]:
        return {
            "rps": self.rps,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "errors": self.errors,
            "wrk_cpu_share": statistics.median(r.wrk_cpu_seconds / r.seconds for r in self.runs),
            "runs": [
                {"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors} for r in self.runs
            ],
        }


def machine_description() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
