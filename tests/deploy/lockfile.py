"""Reading the hashed locks in requirements/ and the requirements they must satisfy (tests/deploy)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

PROJECT = canonicalize_name("allegro-link")
SOURCE_PYPROJECT = "allegro-link (pyproject.toml)"
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)\s*(?:;\s*(?P<marker>.+?))?\s*$")


@dataclass(frozen=True)
class Pin:
    name: NormalizedName
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]
    # What asked for it, as the lock tool wrote it under "# via".
    via: tuple[str, ...]


def read_lock(path: Path) -> dict[NormalizedName, Pin]:
    """Parse a `--generate-hashes` lock: `name==version [; marker]`, its hashes, its `# via` lines."""
    pins: dict[NormalizedName, Pin] = {}
    logical = path.read_text().replace("\\\n", " ").splitlines()
    index = 0
    while index < len(logical):
        line = logical[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement, *options = re.split(r"\s+--hash=", line.strip())
        match = _ENTRY.match(requirement)
        assert match is not None, f"{path.name}: not an exact pin: {line!r}"
        via: list[str] = []
        while index < len(logical) and logical[index].startswith("    #"):
            comment = logical[index].strip().removeprefix("#").strip()
            index += 1
            if comment.startswith("via"):
                comment = comment.removeprefix("via").strip()
            if comment:
                via.append(comment)
        name = canonicalize_name(match["name"])
        assert name not in pins, f"{path.name}: {name} is pinned twice"
        pins[name] = Pin(
            name=name,
            version=Version(match["version"]),
            marker=Marker(match["marker"]) if match["marker"] else None,
            hashes=tuple(option.strip() for option in options),
            via=tuple(via),
        )
    return pins


def project_requirements(pyproject: Path, *extras: str) -> list[Requirement]:
    """The project's own requirements plus those of `extras`, following self-references like
    `allegro-link[embedded]` the way an installer would."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    wanted = list(extras)
    seen: set[str] = set()
    found = [Requirement(raw) for raw in project["dependencies"]]
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for raw in optional[extra]:
            requirement = Requirement(raw)
            if canonicalize_name(requirement.name) == PROJECT:
                wanted.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def build_requirements(pyproject: Path) -> list[Requirement]:
    requires: list[str] = tomllib.loads(pyproject.read_text())["build-system"]["requires"]
    return [Requirement(raw) for raw in requires]


def in_files(path: Path) -> list[Requirement]:
    """The requirements of a `*.in` file (one a line, comments allowed)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]
