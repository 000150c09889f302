"""The repository documents itself: complete user docs in docs/, kept true to the code by these tests."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import pytest

from allegro_link import configdoc
from allegro_link.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"
SRC = ROOT / "src" / "allegro_link"

# Built from parts so that this file does not match itself.
OUTSIDE_REFERENCES = ("../" + "shared", "CON" + "TRACT", "facts " + "sheet", "allegro-oauth-" + "facts")


def repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def test_configuration_reference_is_generated_from_the_settings() -> None:
    assert configdoc.undocumented() == [], "add a meaning to MEANINGS in src/allegro_link/configdoc.py"
    assert (ROOT / "docs" / "configuration.md").read_text() == configdoc.render(), "run `make docs`"


def test_nothing_in_the_repository_points_outside_it() -> None:
    offenders = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images
        offenders += [f"{path.relative_to(ROOT)}: {word}" for word in OUTSIDE_REFERENCES if word in text]
    assert offenders == []


@pytest.mark.parametrize("name", ["api.md", "configuration.md", "allegro.md", "events.md", "deploy.md"])
def test_the_readme_links_each_guide(name: str) -> None:
    assert f"](docs/{name})" in (ROOT / "README.md").read_text()
    assert (ROOT / "docs" / name).is_file()


def test_every_link_in_the_readme_is_a_file_of_the_repository_or_the_local_dev_stack() -> None:
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<([a-z]+://[^>\s]+)>", text)
    assert {"docs/events.md", "http://127.0.0.1:8000/docs"} <= set(targets)  # the scan works

    def in_the_repository(target: str) -> bool:
        path = (ROOT / target.partition("#")[0]).resolve()
        return path.is_relative_to(ROOT) and path.is_file()

    local = ("http://127.0.0.1:", "http://localhost:")
    assert [t for t in targets if not t.startswith(local) and not in_the_repository(t)] == []


def test_every_endpoint_is_in_the_api_guide() -> None:
    document = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    text = API_DOC.read_text()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
        if f"{method.upper()} {path}" not in text and f"`{method.upper()} {path}`" not in text
    ]
    assert missing == []


def test_every_error_code_is_in_the_api_guide() -> None:
    patterns = (
        r'\bcode = "([a-z_]+)"',
        r'problem_response\(\s*\d+,\s*"([a-z_]+)"',
        r'\(\s*"([a-z_]+)",\s*"[A-Z][^"]*"\)',  # errors._HTTP_CODES entries
    )
    codes: set[str] = set()
    for path in SRC.rglob("*.py"):
        if "fake_allegro" in path.parts:
            continue  # the fake's codes are Allegro's, not ours
        source = path.read_text()
        for pattern in patterns:
            codes.update(re.findall(pattern, source))
    assert {"not_ready", "relogin_required", "validation_error", "http_error"} <= codes  # the scan works
    table = set(re.findall(r"^\| `([a-z_]+)` \|", API_DOC.read_text(), re.MULTILINE))
    assert sorted(codes - table) == []


def test_every_cli_command_is_in_the_api_guide() -> None:
    text = API_DOC.read_text()
    commands = [" ".join(path) for path in _command_paths(build_parser())]
    assert commands  # the walk works
    assert [command for command in commands if f"allegro-link {command}" not in text] == []


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every runnable command, e.g. ("api-keys", "create"), walking argparse's subcommands."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        return [prefix]
    return [
        path
        for group in groups
        for name, child in group.choices.items()
        for path in _command_paths(child, (*prefix, name))
    ]
