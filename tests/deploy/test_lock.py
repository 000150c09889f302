"""The hashed locks in requirements/ agree with pyproject.toml, with each other, and with this venv.

When one of these fails after pyproject.toml or requirements/*.in changed: `make lock`, commit the locks.
"""

from __future__ import annotations

import importlib.metadata
import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

import allegro_link
from tests.deploy.lockfile import (
    SOURCE_PYPROJECT,
    Pin,
    build_requirements,
    in_files,
    project_requirements,
    read_lock,
)
from tests.deploy.tools import REPO, REQUIREMENTS

PYPROJECT = REPO / "pyproject.toml"
LOCKS = ("runtime", "dev", "build", "lock")
FIX = "run `make lock` and commit requirements/"


def _lock(name: str) -> dict[NormalizedName, Pin]:
    return read_lock(REQUIREMENTS / f"{name}.txt")


def _assert_satisfied(requirements: list[Requirement], pins: dict[NormalizedName, Pin], lock: str) -> None:
    problems = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        if name not in pins:
            problems.append(f"{requirement} is not in {lock}.txt")
        elif not requirement.specifier.contains(pins[name].version, prereleases=True):
            problems.append(f"{requirement} does not admit the pinned {name}=={pins[name].version}")
    assert not problems, f"{lock}.txt disagrees with its sources ({FIX}):\n" + "\n".join(problems)


def _extra_requirements(requirement: Requirement, pins: dict[NormalizedName, Pin]) -> list[Requirement]:
    """What `name[extra]` adds, read from the installed distribution's metadata at the pinned version."""
    name = canonicalize_name(requirement.name)
    distribution = importlib.metadata.distribution(name)
    assert distribution.version == str(pins[name].version)
    added = []
    for raw in distribution.requires or []:
        dependency = Requirement(raw)
        if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
            continue
        if any(dependency.marker.evaluate({"extra": extra}) for extra in requirement.extras):
            added.append(dependency)
    return added


class TestAgreementWithSources:
    @pytest.mark.parametrize(("lock", "extras"), [("runtime", ()), ("dev", ("dev",))])
    def test_every_project_requirement_is_pinned_within_its_range(
        self, lock: str, extras: tuple[str, ...]
    ) -> None:
        pins = _lock(lock)
        requirements = project_requirements(PYPROJECT, *extras)
        _assert_satisfied(requirements, pins, lock)
        with_extras = [requirement for requirement in requirements if requirement.extras]
        assert with_extras, "uvicorn[standard] at least"
        for requirement in with_extras:
            _assert_satisfied(_extra_requirements(requirement, pins), pins, lock)

    @pytest.mark.parametrize(("lock", "extras"), [("runtime", ()), ("dev", ("dev",))])
    def test_nothing_is_pinned_for_a_requirement_pyproject_no_longer_has(
        self, lock: str, extras: tuple[str, ...]
    ) -> None:
        direct = {canonicalize_name(r.name) for r in project_requirements(PYPROJECT, *extras)}
        from_pyproject = {name for name, pin in _lock(lock).items() if SOURCE_PYPROJECT in pin.via}
        assert from_pyproject == direct, f"{lock}.txt was made from another pyproject.toml ({FIX})"

    def test_the_build_lock_builds_the_project(self) -> None:
        _assert_satisfied(build_requirements(PYPROJECT), _lock("build"), "build")
        _assert_satisfied(in_files(REQUIREMENTS / "build.in"), _lock("build"), "build")

    def test_the_lock_tool_is_pinned(self) -> None:
        _assert_satisfied(in_files(REQUIREMENTS / "lock.in"), _lock("lock"), "lock")


class TestLocksAgreeWithEachOther:
    def test_dev_runs_the_versions_production_runs(self) -> None:
        runtime, dev = _lock("runtime"), _lock("dev")
        differ = {
            name: (str(pin.version), str(dev[name].version) if name in dev else None)
            for name, pin in runtime.items()
            if name not in dev or dev[name].version != pin.version
        }
        assert not differ, f"runtime vs dev: {differ} ({FIX})"

    def test_the_build_tools_the_tests_use_are_the_image_build_tools(self) -> None:
        build, dev = _lock("build"), _lock("dev")
        shared = build.keys() & dev.keys()
        assert canonicalize_name("hatchling") in shared
        assert {name: dev[name].version for name in shared} == {name: build[name].version for name in shared}


class TestLocksAreComplete:
    @pytest.mark.parametrize("lock", LOCKS)
    def test_every_pin_carries_sha256_hashes(self, lock: str) -> None:
        pins = _lock(lock)
        assert pins
        for pin in pins.values():
            assert pin.hashes, f"{pin.name} has no hash in {lock}.txt"
            assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", value) for value in pin.hashes), pin.name

    @pytest.mark.parametrize("lock", ["runtime", "dev"])
    def test_this_venv_was_installed_from_the_lock(self, lock: str) -> None:
        """`make test` installs requirements/dev.txt: what runs the tests is what was locked."""
        for pin in _lock(lock).values():
            if pin.marker is not None and not pin.marker.evaluate():
                continue
            assert importlib.metadata.version(pin.name) == str(pin.version), pin.name


class TestVersion:
    def test_the_package_version_is_the_one_source(self) -> None:
        assert importlib.metadata.version("allegro-link") == allegro_link.__version__

    def test_the_changelog_names_the_current_version(self) -> None:
        changelog = (REPO / "CHANGELOG.md").read_text()
        releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, flags=re.MULTILINE)
        assert releases, "CHANGELOG.md has no release heading like '## [0.1.0] - 2026-12-02'"
        assert releases[0] == allegro_link.__version__
