"""What the image would run, run without Docker: the wheel, the lock, and the deploy files' command lines.

The wheel is built from this checkout with the locked build tools, installed with the locked runtime
dependencies (as the Dockerfile does) into a fresh venv outside the source tree; then the command lines and
variable names of deploy/compose.yaml, which the Kubernetes manifests must share, run there: `migrate`,
then `serve` twice on one database, until /readyz answers 200 on both.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

import allegro_link
from allegro_link.embedded_pg import create_database, drop_database
from allegro_link.settings import ENV_PREFIX, ConfigError, Settings, load_settings
from tests.deploy.tools import DEPLOY, REPO, kubernetes_objects, load_one
from tests.support.database import PgServer, new_database_name
from tests.support.factories import (
    ALLOWED_RETURN,
    CLIENT_ID,
    CLIENT_SECRET,
    ENCRYPTION_KEY,
    OWNER_JWT_SECRET,
    REDIRECT_URI,
)
from tests.support.live import free_port

# One xdist worker runs the heavy deployment tests one after another (`--dist loadgroup` in the Makefile),
# so that they do not all load the machine at once next to the timing-sensitive reliability tests.
pytestmark = pytest.mark.xdist_group("deploy")

# The Dockerfile's install steps, word for word (TestSameStepsAsTheDockerfile checks).
RUNTIME_INSTALL = ("--require-hashes", "--only-binary=:all:", "-r", "requirements/runtime.txt")
WHEEL_BUILD = ("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir")
PIP_TIMEOUT_SECONDS = 900
READY_TIMEOUT_SECONDS = 60
# Values for the variables that compose.yaml takes from the operator's environment (`${NAME:?...}`).
NO_ALLEGRO = "http://127.0.0.1:9"  # nothing listens: serving must not need Allegro to become ready
OPERATOR_VALUES = {
    "ALLEGRO_LINK_ALLEGRO_ENVIRONMENT": "production",
    "ALLEGRO_LINK_ALLEGRO_AUTH_URL": NO_ALLEGRO,
    "ALLEGRO_LINK_ALLEGRO_API_URL": NO_ALLEGRO,
    "ALLEGRO_LINK_CLIENT_ID": CLIENT_ID,
    "ALLEGRO_LINK_CLIENT_SECRET": CLIENT_SECRET,
    "ALLEGRO_LINK_REDIRECT_URI": REDIRECT_URI,
    "ALLEGRO_LINK_RETURN_URL_ALLOWLIST": ALLOWED_RETURN,
    "ALLEGRO_LINK_ENCRYPTION_KEYS": ENCRYPTION_KEY,
    "ALLEGRO_LINK_OWNER_JWT_SECRET": OWNER_JWT_SECRET,
    "ALLEGRO_LINK_DEMO_ENABLED": "false",
}


@dataclass(frozen=True)
class DeployedCommands:
    migrate: list[str]
    serve: list[str]
    # compose.yaml's environment of the service: a literal, or None where the operator supplies it.
    environment: dict[str, str | None]


def compose_commands() -> DeployedCommands:
    services = load_one(DEPLOY / "compose.yaml")["services"]
    environment: dict[str, Any] = services["allegro-link"]["environment"]
    assert services["migrate"]["environment"] == environment
    return DeployedCommands(
        migrate=services["migrate"]["command"],
        serve=services["allegro-link"]["command"],
        environment={name: None if "${" in str(value) else str(value) for name, value in environment.items()},
    )


def _with_listen_address(serve: list[str], port: int) -> list[str]:
    """The serve command line with only its address changed: two replicas share this machine."""
    assert serve[-4:] == ["--host", "0.0.0.0", "--port", "8000"], serve  # noqa: S104 - what the image runs
    return [*serve[:-4], "--host", "127.0.0.1", "--port", str(port)]


class TestComposeAndKubernetesAgree:
    def test_the_same_command_lines(self) -> None:
        compose = compose_commands()
        objects = kubernetes_objects()
        job = objects["Job"]["spec"]["template"]["spec"]["containers"][0]
        deployment = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
        assert job["command"] == compose.migrate == ["allegro-link", "migrate"]
        assert deployment["command"] == compose.serve
        assert compose.serve[:2] == ["allegro-link", "serve"]

    def test_the_same_variable_names_every_one_a_setting(self) -> None:
        compose = compose_commands()
        objects = kubernetes_objects()
        kubernetes_names = objects["ConfigMap"]["data"].keys() | objects["Secret"]["stringData"].keys()
        assert kubernetes_names == compose.environment.keys()
        known = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
        assert compose.environment.keys() <= known
        for kind in ("Deployment", "Job"):
            container = objects[kind]["spec"]["template"]["spec"]["containers"][0]
            sources = [next(iter(source.values()))["name"] for source in container["envFrom"]]
            assert sources == [
                objects["ConfigMap"]["metadata"]["name"],
                objects["Secret"]["metadata"]["name"],
            ]

    def test_secrets_live_in_the_secret_and_settings_in_the_config_map(self) -> None:
        objects = kubernetes_objects()
        secret_fields = {
            ENV_PREFIX + name.upper()
            for name, field in Settings.model_fields.items()
            if "Secret" in str(field.annotation)
        }
        assert secret_fields & objects["ConfigMap"]["data"].keys() == set()
        # The database URL carries a password.
        assert "ALLEGRO_LINK_DATABASE_URL" in objects["Secret"]["stringData"]

    def test_the_secret_template_cannot_be_deployed_as_is(self) -> None:
        objects = kubernetes_objects()
        values = {**objects["ConfigMap"]["data"], **objects["Secret"]["stringData"]}
        fields = {name.removeprefix(ENV_PREFIX).lower(): value for name, value in values.items()}
        with pytest.raises(ConfigError) as refused:
            load_settings(Settings, _env_file=None, **fields)
        assert "ALLEGRO_LINK_ENCRYPTION_KEYS" in str(refused.value)
        assert "ALLEGRO_LINK_OWNER_JWT_SECRET" in str(refused.value)

    def test_the_manifests_deploy_the_current_version(self) -> None:
        objects = kubernetes_objects()
        for kind in ("Deployment", "Job"):
            image = objects[kind]["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image.endswith(f":{allegro_link.__version__}"), (kind, image)


class TestSameStepsAsTheDockerfile:
    def test_the_dockerfile_installs_the_way_this_test_does(self) -> None:
        dockerfile = re.sub(r"\s+", " ", (REPO / "Dockerfile").read_text().replace("\\\n", " "))
        assert "install " + " ".join(RUNTIME_INSTALL) in dockerfile
        assert "pip " + " ".join(WHEEL_BUILD) + " /dist ." in dockerfile
        assert "python -m venv --without-pip /opt/allegro-link" in dockerfile


@pytest.fixture
async def empty_database(pg_server: PgServer) -> AsyncIterator[str]:
    """A database with nothing in it yet: `allegro-link migrate` is what creates the schema."""
    name = new_database_name("install")
    await create_database(pg_server.url("postgres"), name, exist_ok=False)
    yield pg_server.url(name)
    await drop_database(pg_server.url("postgres"), name)


def _pip(*arguments: str, cwd: Path = REPO) -> None:
    # The pinned pip of this venv (requirements/build.txt), with its cache: a rerun downloads nothing.
    result = subprocess.run(  # noqa: S603 - pip with fixed arguments
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _installed(tmp_path: Path) -> Path:
    """Build the wheel and install it with the runtime lock into a new venv; returns the venv."""
    dist = tmp_path / "dist"
    _pip(*WHEEL_BUILD, str(dist), ".")
    wheels = list(dist.glob("allegro_link-*.whl"))
    assert [wheel.name for wheel in wheels] == [f"allegro_link-{allegro_link.__version__}-py3-none-any.whl"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)  # noqa: S603
    python = str(venv / "bin" / "python")
    _pip("--python", python, "install", "--quiet", *RUNTIME_INSTALL)
    _pip("--python", python, "install", "--quiet", "--no-deps", str(wheels[0]))
    return venv


def _environment(venv: Path, database_url: str, commands: DeployedCommands) -> dict[str, str]:
    """A clean environment: the venv's bin first on PATH, compose's variable names, nothing else of ours."""
    supplied = {name for name, value in commands.environment.items() if value is None}
    assert supplied == OPERATOR_VALUES.keys() | {"ALLEGRO_LINK_DATABASE_URL"}
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only where HOME is unset
        "LANG": "C.UTF-8",
    }
    for name, value in commands.environment.items():
        env[name] = value if value is not None else OPERATOR_VALUES.get(name, database_url)
    return env


def _run_command(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the installed CLI
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@contextmanager
def _replicas(commands: list[list[str]], env: dict[str, str], cwd: Path) -> Iterator[list[Any]]:
    with ExitStack() as stack:
        processes = []
        for index, command in enumerate(commands):
            log: IO[str] = stack.enter_context((cwd / f"serve-{index}.log").open("w"))
            process = subprocess.Popen(  # noqa: S603 - the installed CLI
                command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True
            )
            processes.append(process)
        try:
            yield processes
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_ready(urls: list[str], processes: list[Any], cwd: Path) -> dict[str, int]:
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for index, (url, process) in enumerate(zip(urls, processes, strict=True)):
            log = (cwd / f"serve-{index}.log").read_text()[-3000:]
            assert process.poll() is None, f"replica {index} exited:\n{log}"
            try:
                statuses[url] = httpx.get(f"{url}/readyz", timeout=2).status_code
            except httpx.HTTPError:
                statuses[url] = 0
        if set(statuses.values()) == {200}:
            break
        time.sleep(0.2)
    return statuses


@pytest.mark.slow
def test_the_wheel_installed_from_the_lock_migrates_then_serves_two_ready_replicas(
    tmp_path: Path, empty_database: str
) -> None:
    commands = compose_commands()
    venv = _installed(tmp_path)
    workdir = tmp_path / "run"  # outside the source tree: nothing there to import by accident
    workdir.mkdir()
    env = _environment(venv, empty_database, commands)

    where = _run_command(["python", "-c", "import allegro_link; print(allegro_link.__file__)"], env, workdir)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv)
    # The migration scripts travel inside the wheel.
    assert list((venv / "lib").glob("python3.*/site-packages/allegro_link/migrations/env.py"))

    migrated = _run_command([str(part) for part in commands.migrate], env, workdir)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "database migrated to head" in migrated.stdout

    ports = [free_port(), free_port()]
    serve_lines = [_with_listen_address([str(part) for part in commands.serve], port) for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    with _replicas(serve_lines, env, workdir) as processes:
        statuses = _wait_ready(urls, processes, workdir)
        assert statuses == dict.fromkeys(urls, 200)
        for url in urls:
            assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            assert httpx.get(f"{url}/openapi.json").json()["info"]["version"] == allegro_link.__version__
    # SIGTERM, what Kubernetes and compose send at every rollout, is a clean stop (uvicorn finishes its
    # shutdown, then exits by the signal it received).
    for index, process in enumerate(processes):
        log = (workdir / f"serve-{index}.log").read_text()
        assert process.returncode in (0, -signal.SIGTERM), log[-2000:]
        assert "Finished server process" in log, log[-2000:]
