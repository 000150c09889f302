"""Several replicas on one database: one refresh at Allegro, and no rotated token lost on a failed commit."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account
from allegro_link.app import create_app
from allegro_link.db import utcnow
from allegro_link.devtools.processes import Processes, serve_argv
from allegro_link.settings import Settings
from tests.reliability.processes import service_env
from tests.support.accounts import update_account
from tests.support.factories import bearer
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness
from tests.support.live import free_port, serve_in_thread

ME_HEADERS = {"Accept": "application/vnd.allegro.public.v1+json"}


async def _expire_access(settings: Settings, account_id: str) -> None:
    await update_account(settings, account_id, access_token_expires_at=utcnow() - timedelta(seconds=1))


async def _stored_version(settings: Settings, account_id: str) -> int:
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.connect() as connection:
            version = await connection.scalar(
                select(Account.token_version).where(Account.id == uuid.UUID(account_id))
            )
            return int(version or 0)
    finally:
        await engine.dispose()


async def _works_at_allegro(harness: LinkHarness, access_token: str) -> bool:
    response = await harness.fake.get(
        "/me", headers={**ME_HEADERS, "Authorization": f"Bearer {access_token}"}
    )
    return response.status_code == 200


async def _refresh_calls(harness: LinkHarness) -> int:
    calls: int = (await harness.stats())["token_calls"]["refresh_token"]
    return calls


@pytest.fixture
async def linked(harness: LinkHarness) -> tuple[str, str]:
    response = await harness.link("owner-a", "Sprzedawca1")
    assert response.status_code == 200, response.text
    key = await new_api_key(harness.settings, "tokens:read")
    return response.json()["account"]["id"], key


@contextmanager
def _service_processes(settings: Settings, count: int) -> Iterator[list[str]]:
    with (
        tempfile.TemporaryDirectory(prefix="allegro-link-replicas-") as logs,
        Processes(Path(logs)) as started,
    ):
        env = service_env(settings)
        ports = [free_port() for _ in range(count)]
        processes = [started.spawn("serve", serve_argv(port), port=port, env=env) for port in ports]
        for process in processes:
            process.wait_ready()
        yield [process.url for process in processes]


class TestSingleFlightAcrossProcesses:
    @pytest.mark.slow
    async def test_200_requests_over_two_processes_cause_one_refresh(
        self, harness: LinkHarness, linked: tuple[str, str]
    ) -> None:
        account_id, key = linked
        # A slow Allegro widens the window in which every caller wants the refresh.
        await harness.fake.post(
            "/__fake__/faults", json={"endpoint": "token", "kind": "delay", "delay_seconds": 0.5}
        )
        with _service_processes(harness.settings, 2) as urls:
            await _expire_access(harness.settings, account_id)
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=400)) as http:
                responses = await asyncio.gather(
                    *(
                        http.get(f"{urls[i % 2]}/accounts/{account_id}/token", headers=bearer(key))
                        for i in range(200)
                    )
                )
        assert [r.status_code for r in responses] == [200] * 200
        tokens = {r.json()["access_token"] for r in responses}
        assert len(tokens) == 1
        assert await _refresh_calls(harness) == 1
        assert await _works_at_allegro(harness, tokens.pop())


class _CommitFailures:
    """Fails the commit of transactions that stored a token pair in `accounts`, on one engine, `count`
    times. (The marker a refresh commits before calling Allegro is not a pair: it commits.)"""

    def __init__(self, count: int) -> None:
        self.left = count

    def install(self, engine: Any) -> None:
        event.listen(engine, "before_cursor_execute", self._before_execute)
        event.listen(engine, "commit", self._commit)

    def _before_execute(self, conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if (
            statement.lstrip().upper().startswith("UPDATE ACCOUNTS")
            and "access_token_ciphertext" in statement
        ):
            conn.info["wrote_accounts"] = True

    def _commit(self, conn: Connection) -> None:
        if conn.info.pop("wrote_accounts", False) and self.left > 0:
            self.left -= 1
            raise ConnectionResetError("injected: commit failed")


@contextmanager
def _replica(settings: Settings, failures: _CommitFailures | None = None) -> Iterator[str]:
    app = create_app(settings)
    with serve_in_thread(app) as url:
        if failures is not None:
            failures.install(app.state.resources.engine.sync_engine)
        yield url


class TestRotationSafety:
    async def test_a_failed_commit_is_retried_and_the_new_token_stored(
        self, harness: LinkHarness, linked: tuple[str, str]
    ) -> None:
        account_id, key = linked
        failures = _CommitFailures(1)
        with _replica(harness.settings, failures) as url:
            await _expire_access(harness.settings, account_id)
            async with httpx.AsyncClient(base_url=url, timeout=20) as http:
                response = await http.get(f"/accounts/{account_id}/token", headers=bearer(key))
        assert failures.left == 0
        assert response.status_code == 200
        assert await _stored_version(harness.settings, account_id) == 2
        assert await _works_at_allegro(harness, response.json()["access_token"])

    async def test_an_unsaved_pair_is_never_served_and_is_stored_once_the_database_answers(
        self, harness: LinkHarness, linked: tuple[str, str]
    ) -> None:
        account_id, key = linked
        failures = _CommitFailures(4)  # the commit and all its retries
        with _replica(harness.settings, failures) as url:
            await _expire_access(harness.settings, account_id)
            async with httpx.AsyncClient(base_url=url, timeout=20) as http:
                first = await http.get(f"/accounts/{account_id}/token", headers=bearer(key))
                assert first.status_code == 503
                assert "access_token" not in first.text
                await asyncio.sleep(2.5)  # the background writer stores the pair it holds
                second = await http.get(f"/accounts/{account_id}/token", headers=bearer(key))
        assert second.status_code == 200
        assert await _refresh_calls(harness) == 1  # stored, not refreshed again
        assert await _stored_version(harness.settings, account_id) == 2
        assert await _works_at_allegro(harness, second.json()["access_token"])

    async def test_another_replica_recovers_through_allegros_grace(
        self, harness: LinkHarness, linked: tuple[str, str]
    ) -> None:
        account_id, key = linked
        failing = _CommitFailures(10_000)  # replica A never manages to store anything
        with _replica(harness.settings, failing) as url_a, _replica(harness.settings) as url_b:
            await _expire_access(harness.settings, account_id)
            async with httpx.AsyncClient(timeout=20) as http:
                lost = await http.get(f"{url_a}/accounts/{account_id}/token", headers=bearer(key))
                assert lost.status_code == 503
                # Replica B still holds the old refresh token, used seconds ago: within the 60 s grace.
                recovered = await http.get(f"{url_b}/accounts/{account_id}/token", headers=bearer(key))
        assert recovered.status_code == 200, recovered.text
        assert await _works_at_allegro(harness, recovered.json()["access_token"])
        account = await http_account(harness, account_id)
        assert account["status"] == "active"


async def http_account(harness: LinkHarness, account_id: str) -> dict[str, Any]:
    from tests.support.factories import owner_token

    response = await harness.service.get(f"/accounts/{account_id}", headers=bearer(owner_token("owner-a")))
    body: dict[str, Any] = response.json()
    return body
