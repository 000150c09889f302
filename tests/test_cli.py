"""The command line: exit codes, one-line errors, commands that need no configuration."""

from __future__ import annotations

import os
import subprocess
import sys

from allegro_link.settings import parse_encryption_keys


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALLEGRO_LINK_")}
    clean.update(env or {})
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "allegro_link.cli", *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
        check=False,
        cwd="/",
    )


class TestCli:
    def test_encryption_key_generate_needs_no_configuration(self) -> None:
        result = _run("encryption-key", "generate")
        assert result.returncode == 0, result.stderr
        assert parse_encryption_keys(result.stdout.strip().splitlines()[-1])

    def test_openapi_needs_no_configuration(self) -> None:
        result = _run("openapi")
        assert result.returncode == 0, result.stderr
        assert '"openapi"' in result.stdout

    def test_serve_with_missing_settings_fails_with_one_line(self) -> None:
        result = _run("serve", "--port", "1")
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert "ALLEGRO_LINK_DATABASE_URL is required" in lines[0]

    def test_migrate_with_bad_url_names_the_variable(self) -> None:
        result = _run("migrate", env={"ALLEGRO_LINK_DATABASE_URL": "sqlite:///x.db"})
        assert result.returncode == 2
        assert "ALLEGRO_LINK_DATABASE_URL must use the postgresql+asyncpg driver" in result.stderr
