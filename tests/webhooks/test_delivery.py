"""Webhook delivery to a real receiver: signed, retried in order, 410, redirects, rotation, replay."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from allegro_link.accounts.events import EventType, NewEvent, append_events
from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import utcnow
from allegro_link.settings import Settings
from allegro_link.webhooks.endpoints import replay, rotate_secret
from allegro_link.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.support.events import loose_account, open_session, relogin_events
from tests.support.receiver import Received, always, receiver
from tests.support.webhooks import new_endpoint

WAIT = 20.0  # generous: these are functional waits, never timing assertions


async def _append(settings: Settings, *batches: list) -> list[str]:  # type: ignore[type-arg]
    ids: list[str] = []
    for events in batches:
        async with open_session(settings) as session:
            ids += map(str, await append_events(session, events))
            await session.commit()
    return ids


def _ids(received: list[Received]) -> list[str]:
    return [r.webhook_id for r in received]


class TestDelivery:
    async def test_a_delivery_is_signed_per_standard_webhooks_and_carries_the_event(
        self, running: FastAPI, settings: Settings
    ) -> None:
        with receiver() as hook:
            _endpoint, secret = await new_endpoint(settings, hook.url)
            (event_id,) = await _append(settings, relogin_events(1))
            (got,) = await hook.wait_for(lambda r: len(r) >= 1, WAIT)
        verified = Webhook(secret).verify(got.body, got.headers)
        assert verified["id"] == event_id == got.webhook_id
        assert verified["type"] == "account.relogin_required"
        assert got.headers["content-type"] == "application/json"

    async def test_500_three_times_then_200_arrives_four_times_with_one_id_and_holds_back_that_account(
        self, running: FastAPI, settings: Settings
    ) -> None:
        first_id: list[str] = []

        def script(webhook_id: str, nth: int) -> int:
            if not first_id:
                first_id.append(webhook_id)
            return 500 if webhook_id == first_id[0] and nth < 3 else 200

        account, other = loose_account(), loose_account()
        with receiver(script) as hook:
            await new_endpoint(settings, hook.url)
            (first,) = await _append(settings, relogin_events(1, account=account))
            await hook.wait_for(lambda r: len(r) >= 1, WAIT)  # the first attempt failed
            later = await _append(settings, relogin_events(2, account=account))
            (elsewhere,) = await _append(settings, relogin_events(1, account=other))
            received = await hook.wait_for(lambda r: len(hook.delivered()) >= 4, WAIT)
        ids = _ids(received)
        assert ids.count(first) == 4
        assert [r.status for r in received if r.webhook_id == first] == [500, 500, 500, 200]
        # That account's later events wait for the first; the other account's event did not.
        last_first = max(i for i, webhook_id in enumerate(ids) if webhook_id == first)
        assert ids.index(elsewhere) < last_first
        assert _ids(hook.delivered()) == [elsewhere, first, *later]

    async def test_410_gone_disables_the_endpoint(self, running: FastAPI, settings: Settings) -> None:
        with receiver(always(410)) as hook:
            endpoint_id, _ = await new_endpoint(settings, hook.url)
            await _append(settings, relogin_events(1))
            await hook.wait_for(lambda r: len(r) >= 1, WAIT)
            async with open_session(settings) as session:
                state: tuple[bool, str | None] = (True, None)
                for _ in range(400):  # until the worker has recorded the 410 (generous)
                    endpoint = await session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
                    assert endpoint is not None
                    state = (endpoint.enabled, endpoint.disabled_reason)
                    if not endpoint.enabled:
                        break
                    await session.rollback()
                    await asyncio.sleep(0.05)
                assert state == (False, "410 Gone")
            await _append(settings, relogin_events(1))
        assert len(hook.received) == 1

    async def test_a_redirect_is_a_failure_and_is_not_followed(
        self, running: FastAPI, settings: Settings
    ) -> None:
        with receiver(lambda _id, nth: 307 if nth == 0 else 204) as hook:
            await new_endpoint(settings, hook.url)
            (event_id,) = await _append(settings, relogin_events(1))
            received = await hook.wait_for(lambda r: len(r) >= 2, WAIT)
        assert [(r.webhook_id, r.status) for r in received] == [(event_id, 307), (event_id, 204)]

    async def test_an_endpoint_gets_only_its_event_types(self, running: FastAPI, settings: Settings) -> None:
        account = loose_account()
        with receiver() as hook:
            await new_endpoint(settings, hook.url, "account.deleted")
            await _append(
                settings,
                relogin_events(1, account=account),
                [NewEvent(account, EventType.DELETED, "test")],
            )
            (got,) = await hook.wait_for(lambda r: len(r) >= 1, WAIT)
        assert got.event["type"] == "account.deleted"

    async def test_a_rolled_back_change_queues_nothing(self, settings: Settings) -> None:
        with receiver() as hook:
            await new_endpoint(settings, hook.url)
            async with open_session(settings) as session:
                await append_events(session, relogin_events(3))
                await session.rollback()
            async with open_session(settings) as session:
                assert (await session.scalars(select(WebhookDelivery))).all() == []

    async def test_after_a_rotation_both_secrets_verify_and_replay_resends_with_the_same_ids(
        self, running: FastAPI, settings: Settings
    ) -> None:
        vault = TokenVault(KeyRing(settings.encryption_key_ring))
        with receiver() as hook:
            endpoint_id, old = await new_endpoint(settings, hook.url)
            since = utcnow() - timedelta(seconds=1)
            ids = await _append(settings, relogin_events(2))
            await hook.wait_for(lambda r: len(r) >= 2, WAIT)
            async with open_session(settings) as session:
                new = await rotate_secret(session, vault, endpoint_id)
                assert await replay(session, endpoint_id, since) == 2
                await session.commit()
            received = await hook.wait_for(lambda r: len(r) >= 4, WAIT)
        # Two accounts: each one's events are in order, but the two may arrive either way round.
        assert sorted(_ids(received[:2])) == sorted(ids)
        assert sorted(_ids(received[2:])) == sorted(ids)
        for secret in (old, new):
            Webhook(secret).verify(received[-1].body, received[-1].headers)
        assert len(received[-1].headers["webhook-signature"].split(" ")) == 2
        assert len(received[0].headers["webhook-signature"].split(" ")) == 1
