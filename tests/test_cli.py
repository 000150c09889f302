"""The command line: exit codes, one-line errors, commands that need no configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from allegro_link import __version__
from allegro_link.devserver import production_settings_present
from allegro_link.settings import parse_encryption_keys
from tests.support.factories import ENCRYPTION_KEY
from tests.support.live import START_TIMEOUT, free_port


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | str = "/"
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALLEGRO_LINK_")}
    clean.update(env or {})
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "allegro_link.cli", *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=START_TIMEOUT,  # a fresh interpreter: over 60 s under load average 40 on 2 cores
        check=False,
        cwd=cwd,
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

    def test_version_prints_the_package_version(self) -> None:
        result = _run("--version")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"allegro-link {__version__}"

    def test_help_names_no_document_outside_the_repository(self) -> None:
        result = _run("--help")
        assert result.returncode == 0
        assert "CON" + "TRACT" not in result.stdout  # the team document this help once cited
        assert "docs/configuration.md" in result.stdout


class TestDevRefusesProductionSettings:
    """`dev` writes a full-scope key to disk and mints JWTs: never against anything but its own stack."""

    def test_a_database_url_in_the_environment_stops_it_before_anything_is_made(self, tmp_path: Path) -> None:
        url = "postgresql+asyncpg://prod:hunter2@db.example:5432/prod"
        result = _run("dev", env={"ALLEGRO_LINK_DATABASE_URL": url}, cwd=tmp_path)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert "ALLEGRO_LINK_DATABASE_URL" in line and "refuses" in line
        assert "hunter2" not in line  # names the variable, never echoes its value
        assert list(tmp_path.iterdir()) == []  # no state dir, no secrets file, no embedded database

    def test_production_secrets_in_dotenv_stop_it_too(self, tmp_path: Path) -> None:
        (tmp_path / ".env").write_text(
            "ALLEGRO_LINK_OWNER_JWT_SECRET="
            + "p" * 40
            + "\nALLEGRO_LINK_ENCRYPTION_KEYS="
            + ENCRYPTION_KEY
            + "\n"
        )
        result = _run("dev", cwd=tmp_path)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert "ALLEGRO_LINK_OWNER_JWT_SECRET (in .env)" in line
        assert "ALLEGRO_LINK_ENCRYPTION_KEYS (in .env)" in line
        assert sorted(path.name for path in tmp_path.iterdir()) == [".env"]

    def test_log_settings_are_not_production_settings(self) -> None:
        env = {"ALLEGRO_LINK_LOG_LEVEL": "DEBUG", "ALLEGRO_LINK_LOG_JSON": "true", "PATH": "/bin"}
        assert production_settings_present(env, Path("/nonexistent/.env")) == []
        env["allegro_link_client_secret"] = "x"  # pydantic-settings matches names in any case
        assert production_settings_present(env, Path("/nonexistent/.env")) == ["ALLEGRO_LINK_CLIENT_SECRET"]


class TestFakeAllegroControls:
    @staticmethod
    def _stats_status(*options: str) -> int:
        port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ALLEGRO_LINK_")}
        process = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "allegro_link.cli", "fake-allegro", "--port", str(port), *options],
            env=clean,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        http.get("/me")
                        break
                    except httpx.ConnectError:
                        assert process.poll() is None and time.monotonic() < deadline, "did not start"
                        time.sleep(0.05)
                return http.get("/__fake__/stats").status_code
        finally:
            process.terminate()
            process.wait(timeout=10)

    def test_controls_are_off_by_default(self) -> None:
        assert self._stats_status() == 404

    def test_controls_flag_turns_them_on(self) -> None:
        assert self._stats_status("--controls") == 200


class TestCliWithDatabase:
    def _env(self, database_url: str, **extra: str) -> dict[str, str]:
        return {"ALLEGRO_LINK_DATABASE_URL": database_url, **extra}

    def test_api_keys_create_list_revoke(self, database_url: str) -> None:
        env = self._env(database_url)
        created = _run("api-keys", "create", "--name", "orders", "--scope", "tokens:read", env=env)
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        assert key.startswith("alk_")
        listed = _run("api-keys", "list", env=env)
        assert "orders" in listed.stdout
        assert key not in listed.stdout
        assert _run("api-keys", "revoke", "orders", env=env).returncode == 0
        again = _run("api-keys", "revoke", "orders", env=env)
        assert again.returncode == 1
        assert len(again.stderr.strip().splitlines()) == 1

    def test_api_key_with_unknown_scope_is_refused(self, database_url: str) -> None:
        result = _run(
            "api-keys", "create", "--name", "x", "--scope", "tokens:write", env=self._env(database_url)
        )
        assert result.returncode != 0

    def test_import_legacy_is_all_or_nothing_and_rerunnable(self, database_url: str, tmp_path: Path) -> None:
        env = self._env(database_url)
        good = tmp_path / "legacy.csv"
        good.write_text("owner_id,login\nowner-a,StaryLogin\nowner-b,Inny\n")
        first = _run("accounts", "import-legacy", str(good), env=env)
        assert first.returncode == 0, first.stderr
        assert "imported 2" in first.stdout
        assert "skipped 2" in _run("accounts", "import-legacy", str(good), env=env).stdout
        bad = tmp_path / "bad.csv"
        bad.write_text("owner_id,login\nowner-c,Dobry\n,bez-wlasciciela\n")
        failed = _run("accounts", "import-legacy", str(bad), env=env)
        assert failed.returncode == 1
        assert "line 3" in failed.stderr

    def test_encryption_key_rotate_reports_and_is_idempotent(self, database_url: str) -> None:
        env = self._env(database_url, ALLEGRO_LINK_ENCRYPTION_KEYS=ENCRYPTION_KEY)
        first = _run("encryption-key", "rotate", env=env)
        assert first.returncode == 0, first.stderr
        assert "0 values re-encrypted" in first.stdout.splitlines()[-1]

    def test_database_down_is_one_line(self) -> None:
        result = _run(
            "api-keys",
            "list",
            env={"ALLEGRO_LINK_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/x"},
        )
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1
