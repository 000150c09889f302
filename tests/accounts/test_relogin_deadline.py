"""The re-login deadline in every Account, `relogin_soon` in the list, and the warnings before it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import AccountEvent, AccountStatus, ReloginReason
from allegro_link.accounts.warnings import warn_relogin_soon
from allegro_link.db import utcnow
from allegro_link.resources import Resources
from allegro_link.settings import Settings
from allegro_link.tokens.keepalive import update_gauges
from tests.support.accounts import insert_account, update_account
from tests.support.factories import bearer, owner_token
from tests.support.keys import new_api_key

A = bearer(owner_token("owner-a"))
WINDOW = timedelta(days=14)  # ALLEGRO_LINK_RELOGIN_SOON_DAYS's default, which the app runs with here


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


async def _last_used(settings: Settings, days_ago: float, **extra: Any) -> uuid.UUID:
    """An active account last used `days_ago`, whose refresh token is far from expiring."""
    account = await insert_account(
        settings,
        last_used_at=utcnow() - timedelta(days=days_ago),
        refresh_expires_at=utcnow() + timedelta(days=80),
        **extra,
    )
    return account.id


async def _warnings(settings: Settings, account_id: uuid.UUID) -> list[dict[str, Any]]:
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(AccountEvent.data)
                .where(AccountEvent.account_id == account_id, AccountEvent.type == "account.relogin_soon")
                .order_by(AccountEvent.id)
            )
            return [dict(details) for details in rows.scalars()]
    finally:
        await engine.dispose()


class TestDeadline:
    async def test_is_the_earlier_of_the_refresh_expiry_and_the_last_use_plus_90_days(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        now = utcnow()
        by_use = await insert_account(
            settings, last_used_at=now - timedelta(days=40), refresh_expires_at=now + timedelta(days=60)
        )
        by_expiry = await insert_account(
            settings, last_used_at=now - timedelta(days=1), refresh_expires_at=now + timedelta(days=20)
        )
        flagged = await insert_account(
            settings, status=AccountStatus.RELOGIN_REQUIRED, reason=ReloginReason.GRANT_REVOKED
        )
        bodies = {
            account.id: (await client.get(f"/accounts/{account.id}", headers=A)).json()
            for account in (by_use, by_expiry, flagged)
        }
        assert _at(bodies[by_use.id]["relogin_deadline"]) == now - timedelta(days=40) + timedelta(days=90)
        assert _at(bodies[by_expiry.id]["relogin_deadline"]) == now + timedelta(days=20)
        assert bodies[flagged.id]["relogin_deadline"] is None
        assert _at(bodies[by_use.id]["last_used_at"]) == now - timedelta(days=40)
        assert not any(body["relogin_soon"] for body in bodies.values())

    async def test_with_the_keepalive_off_an_account_reaches_relogin_soon_14_days_before_its_deadline(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        soon = await _last_used(settings, days_ago=90 - 14 + 0.01)
        await _last_used(settings, days_ago=90 - 14 - 0.01)
        expiring = await insert_account(settings, refresh_expires_at=utcnow() + timedelta(days=13))
        await insert_account(settings, refresh_expires_at=utcnow() - timedelta(days=1))  # already needs it

        page = (await client.get("/accounts?status=relogin_soon", headers=A)).json()

        assert sorted(item["id"] for item in page["items"]) == sorted([str(soon), str(expiring.id)])
        assert all(item["relogin_soon"] and item["status"] == "active" for item in page["items"])
        assert page["relogin_soon_count"] == 2
        counted = (await client.get("/accounts?status=relogin_required", headers=A)).json()
        assert (counted["relogin_soon_count"], counted["relogin_required_count"]) == (2, 1)


class TestWarnings:
    async def test_one_warning_on_entering_the_window_and_one_at_3_days_left(
        self, settings: Settings, live: tuple[Resources, httpx.AsyncClient]
    ) -> None:
        sessionmaker = live[0].sessionmaker
        account_id = await _last_used(settings, days_ago=70)
        assert await warn_relogin_soon(sessionmaker, WINDOW) == 0

        await update_account(settings, account_id, last_used_at=utcnow() - timedelta(days=77))
        assert await warn_relogin_soon(sessionmaker, WINDOW) == 1
        assert await warn_relogin_soon(sessionmaker, WINDOW) == 0
        await update_account(settings, account_id, last_used_at=utcnow() - timedelta(days=88))
        assert await warn_relogin_soon(sessionmaker, WINDOW) == 1
        assert await warn_relogin_soon(sessionmaker, WINDOW) == 0

        warnings = await _warnings(settings, account_id)
        assert [warning["days_left"] for warning in warnings] == [13, 2]
        assert all(_at(warning["relogin_deadline"]) is not None for warning in warnings)
        # As the API writes its timestamps (RFC 3339, UTC, "Z"), so a consumer parses both alike.
        assert all(warning["relogin_deadline"].endswith("Z") for warning in warnings)

    async def test_a_token_request_afterwards_arms_the_warnings_again(
        self, settings: Settings, live: tuple[Resources, httpx.AsyncClient]
    ) -> None:
        resources, client = live
        account_id = await _last_used(settings, days_ago=80)
        assert await warn_relogin_soon(resources.sessionmaker, WINDOW) == 1
        key = await new_api_key(settings, "tokens:read")

        response = await client.get(f"/accounts/{account_id}/token", headers=bearer(key))
        assert response.status_code == 200
        await resources.token_audit.flush()

        body = (await client.get(f"/accounts/{account_id}", headers=A)).json()
        assert not body["relogin_soon"]
        assert await warn_relogin_soon(resources.sessionmaker, WINDOW) == 0
        await update_account(settings, account_id, last_used_at=utcnow() - timedelta(days=80))
        assert await warn_relogin_soon(resources.sessionmaker, WINDOW) == 1
        assert len(await _warnings(settings, account_id)) == 2


class TestMetrics:
    async def test_metrics_count_the_accounts_in_the_window_and_age_the_oldest_failed_keepalive(
        self, settings: Settings, live: tuple[Resources, httpx.AsyncClient]
    ) -> None:
        resources, client = live
        await _last_used(settings, days_ago=80)
        await _last_used(settings, days_ago=10, keepalive_failed_at=utcnow() - timedelta(days=2))
        await _last_used(settings, days_ago=10, keepalive_failed_at=utcnow() - timedelta(hours=1))

        await update_gauges(resources.sessionmaker, resources.metrics, soon_window=WINDOW)

        samples = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in (await client.get("/metrics")).text.splitlines()
            if line and not line.startswith("#")
        }
        assert samples["allegro_link_accounts_relogin_soon"] == 1
        assert (
            samples["allegro_link_keepalive_oldest_failure_age_seconds"] >= timedelta(days=2).total_seconds()
        )
