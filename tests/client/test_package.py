"""`allegro-link-client` is its own distribution: httpx is all it brings along, and it ships its types."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import allegro_link_client
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

CLIENT = Path(__file__).parents[2] / "clients" / "python"


def dependency_closure(distribution: str) -> set[str]:
    """The distribution and everything it requires (markers evaluated here, extras not taken)."""
    seen: set[str] = set()
    todo = [distribution]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_the_client_requires_httpx_alone() -> None:
    requirements = [Requirement(line) for line in metadata.requires("allegro-link-client") or []]

    assert [r.name for r in requirements] == ["httpx"]


def test_the_package_is_typed() -> None:
    assert (Path(allegro_link_client.__file__).parent / "py.typed").is_file()


@pytest.mark.slow
def test_a_fresh_venv_gets_the_client_httpx_and_httpx_s_own_dependencies_only(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "--quiet", str(CLIENT)], check=True, capture_output=True)  # noqa: S603
    listed = subprocess.run(  # noqa: S603
        [*pip, "list", "--format=freeze"], check=True, capture_output=True, text=True
    ).stdout

    installed = {canonicalize_name(line.split("==")[0]) for line in listed.split()} - {"pip", "setuptools"}

    assert installed == {"allegro-link-client"} | dependency_closure("httpx")
