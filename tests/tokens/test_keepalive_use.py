"""Keep-alive by use: an account nobody uses gets a real API call before Allegro's 90-day rule bites."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import AccountEvent
from allegro_link.app import build_keepalive, build_resources
from allegro_link.db import utcnow
from allegro_link.ops.metrics import Metrics
from allegro_link.resources import Resources
from allegro_link.tokens.keepalive import update_gauges
from allegro_link.tokens.ratelimit import RateLimiter
from tests.support.accounts import update_account
from tests.support.factories import CLIENT_ID, bearer, owner_token
from tests.support.link import LinkHarness

DAY = 86_400.0
OWNER = bearer(owner_token("owner-a"))


@pytest.fixture
async def replicas(harness: LinkHarness) -> AsyncIterator[list[Resources]]:
    """Two replicas' worth of resources (engines, brokers, HTTP clients) on one database."""
    built = [build_resources(harness.settings, Metrics()) for _ in range(2)]
    yield built
    for resources in built:
        await resources.tokens.aclose()
        await resources.http.aclose()
        await resources.engine.dispose()


async def _use_pass(resources: Resources) -> int:
    return await build_keepalive(resources).use.run_pass(RateLimiter(6000))


async def _account(harness: LinkHarness, account_id: str) -> dict[str, Any]:
    response = await harness.service.get(f"/accounts/{account_id}", headers=OWNER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _unused_for(harness: LinkHarness, login: str, days: float) -> str:
    """An account linked `days` ago as the service and the fake both see it, untouched since."""
    account = (await harness.link("owner-a", login)).json()["account"]
    now = utcnow()
    await update_account(
        harness.settings,
        account["id"],
        last_used_at=now - timedelta(days=days),
        last_refreshed_at=now - timedelta(days=days),
        access_token_expires_at=now - timedelta(days=days) + timedelta(hours=12),
        refresh_token_expires_at=datetime.fromisoformat(account["refresh_token_expires_at"])
        - timedelta(days=days),
    )
    return str(account["id"])


async def _advance_fake_clock(harness: LinkHarness, days: float) -> None:
    response = await harness.fake.post("/__fake__/clock", json={"advance_seconds": days * DAY})
    assert response.status_code == 200


async def _fault(harness: LinkHarness, endpoint: str, status: int, count: int) -> None:
    fault = {"endpoint": endpoint, "kind": "status", "status": status, "count": count}
    assert (await harness.fake.post("/__fake__/faults", json=fault)).status_code in (200, 201)


async def _events(harness: LinkHarness, account_id: str) -> list[str]:
    engine = create_async_engine(harness.settings.database_url.get_secret_value())
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(AccountEvent.type)
                .where(AccountEvent.account_id == uuid.UUID(account_id))
                .order_by(AccountEvent.id)
            )
            return [str(kind) for kind in rows.scalars()]
    finally:
        await engine.dispose()


class TestUse:
    async def test_an_account_never_asked_for_a_token_is_called_after_30_days_and_its_deadline_moves(
        self, harness: LinkHarness, replicas: list[Resources]
    ) -> None:
        account_id = await _unused_for(harness, "Uspione", days=31)
        await _advance_fake_clock(harness, 31)
        before = await _account(harness, account_id)

        assert await _use_pass(replicas[0]) == 1

        after = await _account(harness, account_id)
        stats = await harness.stats()
        assert stats["me_by_user"] == {"Uspione": 2}  # the link's, then the keep-alive's
        assert stats["token_calls"]["refresh_token"] == 1  # its access token had expired
        assert after["status"] == "active"
        assert datetime.fromisoformat(after["last_used_at"]) > datetime.fromisoformat(before["last_used_at"])
        moved = datetime.fromisoformat(after["relogin_deadline"]) - datetime.fromisoformat(
            before["relogin_deadline"]
        )
        assert moved > timedelta(days=30)
        assert await _use_pass(replicas[0]) == 0  # used now: nothing more to do

    async def test_an_account_used_within_the_period_is_not_called(
        self, harness: LinkHarness, replicas: list[Resources]
    ) -> None:
        await _unused_for(harness, "Uzywane", days=29)
        assert await _use_pass(replicas[0]) == 0
        assert (await harness.stats())["me_by_user"] == {"Uzywane": 1}

    async def test_two_replicas_never_both_call_me_for_one_account_in_a_pass(
        self, harness: LinkHarness, replicas: list[Resources]
    ) -> None:
        logins = [f"Konto{n}" for n in range(6)]
        for login in logins:
            await _unused_for(harness, login, days=40)
        await _advance_fake_clock(harness, 40)

        used = await asyncio.gather(*(_use_pass(resources) for resources in replicas))

        assert sum(used) == len(logins)
        stats = await harness.stats()
        assert stats["me_by_user"] == dict.fromkeys(logins, 2)
        assert stats["refresh_by_user"] == dict.fromkeys(logins, 1)


class TestFailures:
    async def test_during_an_allegro_outage_the_keepalive_flags_nothing(
        self, harness: LinkHarness, replicas: list[Resources]
    ) -> None:
        account_id = await _unused_for(harness, "Awaria", days=31)
        await _advance_fake_clock(harness, 31)
        await _fault(harness, "token", 503, 50)
        await _fault(harness, "me", 503, 50)
        resources = replicas[0]

        assert await _use_pass(resources) == 0
        calls_after_first = (await harness.stats())["token_calls"]["total"]
        assert await _use_pass(resources) == 0  # the breaker is open now: no call at all

        body = await _account(harness, account_id)
        assert (body["status"], body["relogin_reason"]) == ("active", None)
        assert await _events(harness, account_id) == ["account.linked"]
        assert (await harness.stats())["token_calls"]["total"] == calls_after_first
        await update_gauges(resources.sessionmaker, resources.metrics, soon_window=timedelta(days=14))
        age = resources.metrics.registry.get_sample_value("allegro_link_keepalive_oldest_failure_age_seconds")
        assert age is not None
        assert age > 0

    async def test_a_call_refused_with_a_freshly_refreshed_token_needs_a_relogin(
        self, harness: LinkHarness, replicas: list[Resources]
    ) -> None:
        account_id = await _unused_for(harness, "Odlaczone", days=31)
        await _advance_fake_clock(harness, 31)
        await _fault(harness, "me", 403, 1)

        assert await _use_pass(replicas[0]) == 0

        body = await _account(harness, account_id)
        assert (body["status"], body["relogin_reason"]) == ("relogin_required", "grant_revoked")
        assert body["relogin_deadline"] is None

    async def test_a_refused_held_token_is_refreshed_and_the_call_tried_again(
        self, harness: LinkHarness, replicas: list[Resources]
    ) -> None:
        account_id = await _unused_for(harness, "Stary", days=31)
        # The held access token is still valid in the service's eyes, so no refresh comes first.
        await update_account(
            harness.settings, account_id, access_token_expires_at=utcnow() + timedelta(hours=6)
        )
        await _fault(harness, "me", 401, 1)

        assert await _use_pass(replicas[0]) == 1

        body = await _account(harness, account_id)
        assert body["status"] == "active"
        stats = await harness.stats()
        assert stats["me_by_user"] == {"Stary": 2}
        assert stats["refresh_by_user"] == {"Stary": 1}

    async def test_a_broken_client_secret_flags_nothing(
        self, harness: LinkHarness, replicas: list[Resources]
    ) -> None:
        account_id = await _unused_for(harness, "Sekret", days=31)
        await update_account(
            harness.settings, account_id, access_token_expires_at=utcnow() + timedelta(hours=6)
        )
        await _fault(harness, "me", 401, 2)  # the held token, then the one served after the failed refresh
        broken = {
            "client_id": CLIENT_ID,
            "client_secret": "rotated-at-allegro",
            "redirect_uris": [harness.settings.redirect_uri],
        }
        assert (await harness.fake.post("/__fake__/clients", json=broken)).status_code == 201

        assert await _use_pass(replicas[0]) == 0

        body = await _account(harness, account_id)
        assert (body["status"], body["relogin_reason"]) == ("active", None)
        assert await _events(harness, account_id) == ["account.linked"]
