"""Several replicas on one database: one refresh at Allegro, and no rotated token lost on a failed commit."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection

from allegro_link.app import create_app
from allegro_link.devtools.processes import Processes, serve_argv
from allegro_link.settings import Settings
from tests.reliability.processes import service_env
from tests.support.link import LinkHarness
from tests.support.live import free_port, serve_in_thread
from tests.support.tokens import PATIENT_WAITS, Linked, works_at_allegro


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
        self, harness: LinkHarness, linked: Linked
    ) -> None:
        # A slow Allegro widens the window in which every caller wants the refresh.
        await linked.fault(kind="delay", delay_seconds=0.5)
        # The claim is about single flight, not about the service's waits: on a loaded machine a refresh
        # outlasted the lock wait of the other process, which then answered 503 as it should.
        with _service_processes(harness.settings.model_copy(update=PATIENT_WAITS), 2) as urls:
            await linked.expire_access()
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=400)) as http:
                responses = await asyncio.gather(
                    *(linked.token(via=http, base_url=urls[i % 2]) for i in range(200))
                )
        assert [r.status_code for r in responses] == [200] * 200
        tokens = {r.json()["access_token"] for r in responses}
        assert len(tokens) == 1
        assert await linked.refresh_calls() == 1
        assert await works_at_allegro(harness.fake, tokens.pop())


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
        self, harness: LinkHarness, linked: Linked
    ) -> None:
        failures = _CommitFailures(1)
        with _replica(harness.settings, failures) as url:
            await linked.expire_access()
            async with httpx.AsyncClient(base_url=url, timeout=20) as http:
                response = await linked.token(via=http)
        assert failures.left == 0
        assert response.status_code == 200
        assert (await linked.stored()).version == 2
        assert await works_at_allegro(harness.fake, response.json()["access_token"])

    async def test_an_unsaved_pair_is_never_served_and_is_stored_once_the_database_answers(
        self, harness: LinkHarness, linked: Linked
    ) -> None:
        failures = _CommitFailures(4)  # the commit and all its retries
        with _replica(harness.settings, failures) as url:
            await linked.expire_access()
            async with httpx.AsyncClient(base_url=url, timeout=20) as http:
                first = await linked.token(via=http)
                assert first.status_code == 503
                assert "access_token" not in first.text
                await asyncio.sleep(2.5)  # the background writer stores the pair it holds
                second = await linked.token(via=http)
        assert second.status_code == 200
        assert await linked.refresh_calls() == 1  # stored, not refreshed again
        assert (await linked.stored()).version == 2
        assert await works_at_allegro(harness.fake, second.json()["access_token"])

    async def test_another_replica_recovers_through_allegros_grace(
        self, harness: LinkHarness, linked: Linked
    ) -> None:
        failing = _CommitFailures(10_000)  # replica A never manages to store anything
        with _replica(harness.settings, failing) as url_a, _replica(harness.settings) as url_b:
            await linked.expire_access()
            async with httpx.AsyncClient(timeout=20) as http:
                lost = await linked.token(via=http, base_url=url_a)
                assert lost.status_code == 503
                # Replica B still holds the old refresh token, used seconds ago: within the 60 s grace.
                recovered = await linked.token(via=http, base_url=url_b)
        assert recovered.status_code == 200, recovered.text
        assert await works_at_allegro(harness.fake, recovered.json()["access_token"])
        assert await linked.status() == "active"
