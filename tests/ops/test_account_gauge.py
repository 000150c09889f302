"""`allegro_link_accounts{status}` is right from the first scrape, not after the keep-alive's pass."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from prometheus_client import generate_latest

from allegro_link.accounts.models import AccountStatus, ReloginReason
from allegro_link.app import create_app
from allegro_link.ops.account_gauge import refresh_forever
from allegro_link.settings import Settings
from tests.support.accounts import insert_account
from tests.support.factories import utc_in
from tests.support.live import lifespan


def gauge_lines(metrics_text: str) -> set[str]:
    return {line for line in metrics_text.splitlines() if line.startswith("allegro_link_accounts{")}


async def test_the_first_scrape_after_start_counts_accounts_by_effective_status(settings: Settings) -> None:
    assert not settings.keepalive_enabled  # nothing but the start-up fills it here
    for login in ("A", "B"):
        await insert_account(settings, owner_id="o", login=login)
    await insert_account(
        settings,
        owner_id="o",
        login="C",
        status=AccountStatus.RELOGIN_REQUIRED,
        reason=ReloginReason.GRANT_REVOKED,
    )
    await insert_account(settings, owner_id="o", login="D", refresh_expires_at=utc_in(-60))  # lapsed

    async with lifespan(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            body = (await http.get("/metrics")).text

    assert gauge_lines(body) == {
        'allegro_link_accounts{status="active"} 2.0',
        'allegro_link_accounts{status="relogin_required"} 2.0',
    }


async def test_the_loop_follows_changes(settings: Settings) -> None:
    app = create_app(settings)
    async with lifespan(app):
        resources = app.state.resources
        await insert_account(settings, owner_id="o", login="late")
        sleeps = 0

        async def one_pass_then_stop(seconds: float) -> None:
            nonlocal sleeps
            sleeps += 1
            if sleeps > 1:
                raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await refresh_forever(
                resources.sessionmaker,
                resources.metrics,
                soon_window=timedelta(days=14),
                sleep=one_pass_then_stop,
            )
        body = generate_latest(resources.metrics.registry).decode()

    assert 'allegro_link_accounts{status="active"} 1.0' in gauge_lines(body)
