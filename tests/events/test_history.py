"""GET /accounts/{id}/events: the account's history, newest first, for its owner and for services."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts import transitions
from allegro_link.accounts.expiry import expire_lapsed_once
from allegro_link.accounts.models import Account, AccountEvent, ReloginReason
from allegro_link.app import create_app
from allegro_link.db import create_sessionmaker, utcnow
from allegro_link.settings import Settings
from tests.support.accounts import insert_account
from tests.support.events import open_session, read_feed_to_end
from tests.support.factories import bearer, make_settings, owner_token
from tests.support.keys import new_api_key
from tests.support.live import lifespan


async def _flip(settings: Settings, account: Account, reason: ReloginReason) -> None:
    async with open_session(settings) as session:
        row = await session.get(Account, account.id, with_for_update=True)
        assert row is not None
        await transitions.relogin_required(session, row, reason, actor="test")
        await session.commit()


class TestHistory:
    async def test_owner_reads_its_accounts_history_newest_first_in_pages(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        account = await insert_account(settings, owner_id="owner-a")
        reasons = [ReloginReason.GRANT_REVOKED, ReloginReason.REFRESH_REJECTED, ReloginReason.GRANT_REVOKED]
        for reason in reasons:
            await _flip(settings, account, reason)
        headers = bearer(owner_token("owner-a"))
        first = (
            await client.get(f"/accounts/{account.id}/events", params={"limit": 2}, headers=headers)
        ).json()
        assert [e["data"]["reason"] for e in first["items"]] == ["grant_revoked", "refresh_rejected"]
        rest = (
            await client.get(
                f"/accounts/{account.id}/events",
                params={"limit": 2, "cursor": first["next_cursor"]},
                headers=headers,
            )
        ).json()
        assert [e["data"]["reason"] for e in rest["items"]] == ["grant_revoked"]
        assert rest["next_cursor"] is None

    async def test_another_owners_account_is_404_and_a_service_needs_accounts_read(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        account = await insert_account(settings, owner_id="owner-a")
        await _flip(settings, account, ReloginReason.GRANT_REVOKED)
        url = f"/accounts/{account.id}/events"
        assert (await client.get(url, headers=bearer(owner_token("owner-b")))).status_code == 404
        reader = await new_api_key(settings, "accounts:read")
        assert len((await client.get(url, headers=bearer(reader))).json()["items"]) == 1
        feed_only = await new_api_key(settings, "events:read")
        assert (await client.get(url, headers=bearer(feed_only))).status_code == 403

    async def test_a_deleted_accounts_history_stays_readable_for_services_only(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        account = await insert_account(settings, owner_id="owner-a")
        owner = bearer(owner_token("owner-a"))
        assert (await client.delete(f"/accounts/{account.id}", headers=owner)).status_code == 204
        assert (await client.get(f"/accounts/{account.id}/events", headers=owner)).status_code == 404
        reader = bearer(await new_api_key(settings, "accounts:read"))
        items = (await client.get(f"/accounts/{account.id}/events", headers=reader)).json()["items"]
        assert [e["type"] for e in items] == ["account.deleted"]


class TestRefreshTokenExpiry:
    async def test_a_lapsed_refresh_token_becomes_one_relogin_required_event(
        self, settings: Settings
    ) -> None:
        expiry = utcnow()
        account = await insert_account(settings, refresh_expires_at=expiry)
        engine = create_async_engine(settings.database_url.get_secret_value())
        sessionmaker = create_sessionmaker(engine)
        try:
            assert await expire_lapsed_once(sessionmaker) == 1
            assert await expire_lapsed_once(sessionmaker) == 0  # once, not on every pass
            async with sessionmaker() as session:
                row = await session.get(Account, account.id)
                assert row is not None
                assert row.relogin_reason is ReloginReason.REFRESH_TOKEN_EXPIRED
                assert row.status_changed_at == expiry
                events = (await session.scalars(select(AccountEvent))).all()
                assert [(e.type, e.data, e.actor) for e in events] == [
                    ("account.relogin_required", {"reason": "refresh_token_expired"}, "keepalive")
                ]
        finally:
            await engine.dispose()

    async def test_the_running_service_emits_it_with_nothing_else_happening(self, database_url: str) -> None:
        settings = make_settings(database_url, keepalive_enabled=True, keepalive_interval_seconds=1)
        key = await new_api_key(settings, "events:read")
        account = await insert_account(settings, refresh_expires_at=utcnow() + timedelta(seconds=1))
        app = create_app(settings)
        async with lifespan(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                items: list[dict[str, Any]] = []
                cursor = None
                for _ in range(10):  # generous: the contract bound is one interval (1 s here)
                    page, cursor = await read_feed_to_end(client, key, cursor, wait=3)
                    items += page
                    if items:
                        break
        assert [(e["type"], e["account"]["id"], e["data"]) for e in items] == [
            ("account.relogin_required", str(account.id), {"reason": "refresh_token_expired"})
        ]
