"""Tooling for the tests, the bench (bench/) and the soak (scripts/soak.py); the service never imports it.

It lives in the package, next to the other development tools that ship in the wheel (`devserver`,
`embedded_pg`, `fake_allegro`), because the package is the one thing all three callers import the same
way. Each runs from the repository root with the package installed editable, but none is on the
others' path: pytest puts the root on `sys.path` (`tests.support...`), `python bench/run.py` puts
bench/ there, `python scripts/soak.py` scripts/. A copy per caller is what this replaced.

Nothing heavy at import time: the modules import the standard library only (httpx, uvicorn and the
settings when a function that needs them runs).
"""
