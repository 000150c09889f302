"""What the deployment tests share: where the files are, and how a missing system tool is reported.

A system tool (Debian's pgbouncer, promtool) that is missing skips its tests loudly on a developer's
machine, and fails them under `CI=true`, where `.ci/run` installs it (as tests/demo does for Chromium).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
REQUIREMENTS = REPO / "requirements"

NOT_RUN = "deployment tests NOT RUN"


def require_tool(path: Path, package: str) -> Path:
    """The tool at `path`, or skip (fail under CI=true) naming the Debian package that provides it."""
    if path.is_file() and os.access(path, os.X_OK):
        return path
    problem = f"{path} is missing (apt-get install {package}; .ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"cannot run under CI=true: {problem}", pytrace=False)
    pytest.skip(f"{NOT_RUN}: {problem}")


def load_documents(path: Path) -> list[dict[str, Any]]:
    documents = [document for document in yaml.safe_load_all(path.read_text()) if document is not None]
    assert all(isinstance(document, dict) for document in documents), path
    return documents


def load_one(path: Path) -> dict[str, Any]:
    documents = load_documents(path)
    assert len(documents) == 1, path
    return documents[0]


def kubernetes_objects() -> dict[str, dict[str, Any]]:
    """Every manifest under deploy/kubernetes/, by kind."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in load_documents(path):
            kind = str(document["kind"])
            assert kind not in objects, f"two {kind} objects: keep one per kind"
            objects[kind] = document
    return objects
