"""Keep-alive refreshes exactly the accounts whose refresh token is about to lapse, at a capped rate."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account, AccountEvent, AccountStatus, ReloginReason
from allegro_link.app import build_keepalive, build_resources
from allegro_link.db import utcnow
from allegro_link.ops.metrics import Metrics
from allegro_link.resources import Resources
from allegro_link.settings import Settings
from allegro_link.tokens.keepalive import RateLimiter, sweep_once
from tests.support.link import LinkHarness


@pytest.fixture
async def resources(harness: LinkHarness) -> AsyncIterator[Resources]:
    built = build_resources(harness.settings, Metrics())
    yield built
    await built.http.aclose()
    await built.engine.dispose()


async def _set(settings: Settings, account_id: str, **values: object) -> None:
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(Account).where(Account.id == uuid.UUID(account_id)).values(**values)
            )
    finally:
        await engine.dispose()


async def _versions(settings: Settings) -> dict[str, int]:
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(Account.login, Account.token_version))).all()
            return {str(login): int(version) for login, version in rows}
    finally:
        await engine.dispose()


class _NoWait:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class TestKeepAlive:
    async def test_refreshes_only_accounts_near_expiry(
        self, harness: LinkHarness, resources: Resources
    ) -> None:
        ids = {}
        for login in ("Wkrotce", "Daleko", "Wylogowane"):
            ids[login] = (await harness.link("owner-a", login)).json()["account"]["id"]
        now = utcnow()
        await _set(harness.settings, ids["Wkrotce"], refresh_token_expires_at=now + timedelta(days=5))
        await _set(harness.settings, ids["Daleko"], refresh_token_expires_at=now + timedelta(days=30))
        await _set(
            harness.settings,
            ids["Wylogowane"],
            refresh_token_expires_at=now + timedelta(days=5),
            status=AccountStatus.RELOGIN_REQUIRED,
            relogin_reason=ReloginReason.GRANT_REVOKED,
        )
        refreshed = await sweep_once(
            resources.sessionmaker, resources.tokens, window=timedelta(days=14), limiter=RateLimiter(6000)
        )
        assert refreshed == 1
        assert await _versions(harness.settings) == {"Wkrotce": 2, "Daleko": 1, "Wylogowane": 1}
        assert (await harness.stats())["token_calls"]["refresh_token"] == 1

        # The fresh pair moved the expiry three months out: the next pass has nothing to do.
        again = await sweep_once(
            resources.sessionmaker, resources.tokens, window=timedelta(days=14), limiter=RateLimiter(6000)
        )
        assert again == 0

    async def test_a_token_the_keepalive_issued_and_a_caller_reports_rejected_is_refreshed(
        self, harness: LinkHarness, resources: Resources
    ) -> None:
        account_id = (await harness.link("owner-a", "Odswiezone")).json()["account"]["id"]
        await _set(harness.settings, account_id, refresh_token_expires_at=utcnow() + timedelta(days=1))
        assert await resources.tokens.refresh_if_due(
            account_id=uuid.UUID(account_id), due_before=utcnow() + timedelta(days=14)
        )
        kept_alive = await resources.tokens.token(uuid.UUID(account_id), min_valid_for=timedelta(0))
        assert kept_alive.token_version == 2
        # Seconds after the keep-alive's refresh: not a forced one, so no 10 s window applies.
        fresh = await resources.tokens.refresh(
            uuid.UUID(account_id), min_valid_for=timedelta(0), rejected_token=kept_alive.access_token
        )
        assert fresh.refreshed
        assert fresh.access_token != kept_alive.access_token
        assert (await harness.stats())["token_calls"]["refresh_token"] == 2

    async def test_skips_an_account_another_replica_is_refreshing(
        self, harness: LinkHarness, resources: Resources
    ) -> None:
        account_id = (await harness.link("owner-a", "Zajete")).json()["account"]["id"]
        await _set(harness.settings, account_id, refresh_token_expires_at=utcnow() + timedelta(days=1))
        engine = create_async_engine(harness.settings.database_url.get_secret_value())
        try:
            async with engine.begin() as other_replica:
                await other_replica.execute(
                    text("SELECT 1 FROM accounts WHERE id = :id FOR UPDATE"), {"id": uuid.UUID(account_id)}
                )
                due = utcnow() + timedelta(days=14)
                assert await resources.tokens.refresh_if_due(uuid.UUID(account_id), due) is False
        finally:
            await engine.dispose()
        assert (await harness.stats())["token_calls"]["refresh_token"] == 0


async def _relogin_soon_events(settings: Settings, account_id: str) -> int:
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.connect() as connection:
            count = await connection.execute(
                select(func.count())
                .select_from(AccountEvent)
                .where(
                    AccountEvent.account_id == uuid.UUID(account_id),
                    AccountEvent.type == "account.relogin_soon",
                )
            )
            return int(count.scalar_one())
    finally:
        await engine.dispose()


class TestPass:
    async def test_with_the_keepalive_off_an_account_near_its_deadline_is_warned_once_and_not_called(
        self, harness: LinkHarness, resources: Resources
    ) -> None:
        account_id = (await harness.link("owner-a", "Zapomniane")).json()["account"]["id"]
        await _set(harness.settings, account_id, last_used_at=utcnow() - timedelta(days=77))
        keepalive = build_keepalive(resources)
        assert not keepalive.enabled  # the tests' settings turn the keep-alive's calls off

        await keepalive.run_pass(RateLimiter(6000))
        await keepalive.run_pass(RateLimiter(6000))

        assert await _relogin_soon_events(harness.settings, account_id) == 1
        stats = await harness.stats()
        assert (stats["me_by_user"], stats["token_calls"]["refresh_token"]) == ({"Zapomniane": 1}, 0)

    async def test_with_the_keepalive_on_the_same_account_is_used_before_anyone_is_warned(
        self, harness: LinkHarness, resources: Resources
    ) -> None:
        account_id = (await harness.link("owner-a", "Zapomniane")).json()["account"]["id"]
        await _set(harness.settings, account_id, last_used_at=utcnow() - timedelta(days=77))
        keepalive = dataclasses.replace(build_keepalive(resources), enabled=True)

        await keepalive.run_pass(RateLimiter(6000))

        assert await _relogin_soon_events(harness.settings, account_id) == 0
        assert (await harness.stats())["me_by_user"] == {"Zapomniane": 2}


class TestRateLimiter:
    async def test_spaces_acquisitions_to_the_cap(self) -> None:
        now = [100.0]
        sleep = _NoWait()
        limiter = RateLimiter(120, clock=lambda: now[0], sleep=sleep)  # one every 0.5 s
        for _ in range(4):
            await limiter.acquire()
        assert sleep.waits == pytest.approx([0.5, 1.0, 1.5])

    async def test_does_not_wait_when_calls_are_already_slow(self) -> None:
        now = [0.0]
        sleep = _NoWait()
        limiter = RateLimiter(60, clock=lambda: now[0], sleep=sleep)
        for _ in range(3):
            await limiter.acquire()
            now[0] += 2.0
        assert sleep.waits == []
