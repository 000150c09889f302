"""Two `allegro-link serve` processes on one database deliver one endpoint's events: once each, in order
per account, and every one of them even when a process is SIGKILLed in the middle of the batch."""

from __future__ import annotations

from collections import Counter

import pytest

from allegro_link.accounts.events import NewEvent, append_events
from allegro_link.settings import Settings
from tests.reliability.processes import serve_process
from tests.support.events import loose_account, open_session, relogin_events
from tests.support.factories import make_settings
from tests.support.receiver import receiver
from tests.support.webhooks import new_endpoint

pytestmark = pytest.mark.slow

EVENTS = 500
ACCOUNTS = 25
WAIT = 120.0  # generous: two processes and a receiver on a loaded two-core machine


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, webhook_retry_delays=[0.5, 0.5, 0.5, 0.5, 0.5, 0.5])


async def _append_batch(settings: Settings) -> dict[str, list[str]]:
    """EVENTS events over ACCOUNTS accounts in a few transactions; returns each account's ids in order."""
    accounts = [loose_account() for _ in range(ACCOUNTS)]
    order: dict[str, list[str]] = {str(a.id): [] for a in accounts}
    per_transaction = 50
    for start in range(0, EVENTS, per_transaction):
        events: list[NewEvent] = []
        for n in range(start, start + per_transaction):
            events += relogin_events(1, account=accounts[n % ACCOUNTS])
        async with open_session(settings) as session:
            ids = await append_events(session, events)
            await session.commit()
        for event, event_id in zip(events, ids, strict=True):
            order[str(event.account.id)].append(str(event_id))
    return order


class TestTwoReplicas:
    async def test_each_event_is_delivered_exactly_once_in_a_clean_run(self, settings: Settings) -> None:
        with receiver() as hook:
            await new_endpoint(settings, hook.url)
            async with serve_process(settings) as first, serve_process(settings) as second:
                order = await _append_batch(settings)
                await hook.wait_for(lambda r: len({x.webhook_id for x in r}) >= EVENTS, WAIT)
                assert first.running() and second.running()
            received = hook.delivered()
        counts = Counter(r.webhook_id for r in received)
        assert len(counts) == EVENTS
        assert [n for n in counts.values() if n != 1] == []
        for account_id, ids in order.items():
            assert [r.webhook_id for r in received if r.event["account"]["id"] == account_id] == ids

    async def test_every_event_arrives_after_one_replica_is_killed_mid_batch(
        self, settings: Settings
    ) -> None:
        with receiver(delay=0.02) as hook:
            await new_endpoint(settings, hook.url)
            async with serve_process(settings) as victim, serve_process(settings) as survivor:
                order = await _append_batch(settings)
                await hook.wait_for(lambda r: len(r) >= EVENTS // 5, WAIT)
                victim.kill()
                await hook.wait_for(lambda r: len({x.webhook_id for x in r}) >= EVENTS, WAIT)
                assert survivor.running()
            received = hook.delivered()
        assert {r.webhook_id for r in received} == {i for ids in order.values() for i in ids}
