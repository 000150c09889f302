"""Playwright driving Debian's Chromium: where it is, how it starts, and what happens when it is missing.

A browser is never downloaded. Without Playwright or `/usr/bin/chromium` the browser tests are skipped
loudly on a developer's machine, and fail under `CI=true`, where `.ci/run` has installed Chromium.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOT_RUN = "browser tests NOT RUN"


def missing_browser_stack() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


def require_browser_stack() -> None:
    """Call at the top of a browser test module, before importing Playwright (like importorskip)."""
    problem = missing_browser_stack()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run under CI=true: {problem}", pytrace=False)
    pytest.skip(f"{NOT_RUN}: {problem}", allow_module_level=True)
