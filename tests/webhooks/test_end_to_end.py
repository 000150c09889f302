"""Against the fake Allegro over real HTTP and a real receiver: what Polkurier hears, and what never leaks."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine
from standardwebhooks.webhooks import Webhook

from allegro_link.accounts.models import Account
from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import utcnow
from allegro_link.settings import Settings
from tests.support.events import read_feed_to_end
from tests.support.factories import CLIENT_SECRET, ENCRYPTION_KEY, bearer, owner_token
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness, returned_params
from tests.support.logs import captured_logs
from tests.support.receiver import Received, Receiver, receiver
from tests.support.webhooks import new_endpoint

PROMISED_BOUND = 2.0  # seconds from the refused refresh to the webhook (docs/events.md)


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as found:
        yield found


@pytest.fixture(name="captured_logs")
def _captured_logs() -> Iterator[io.StringIO]:
    with captured_logs("DEBUG") as sink:
        yield sink


async def _expire_access(settings: Settings) -> None:
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.begin() as connection:
            await connection.execute(update(Account).values(access_token_expires_at=utcnow()))
    finally:
        await engine.dispose()


def _relogins(received: list[Received]) -> list[Received]:
    return [r for r in received if r.event["type"] == "account.relogin_required"]


class TestRevokedGrant:
    async def test_a_revoked_grant_is_one_signed_relogin_required_webhook_within_two_seconds(
        self, harness: LinkHarness, hook: Receiver
    ) -> None:
        _endpoint, secret = await new_endpoint(harness.settings, hook.url)
        account = (await harness.link("owner-a", "Sprzedawca1")).json()["account"]
        key = await new_api_key(harness.settings, "tokens:read")
        await harness.fake.post("/__fake__/users/Sprzedawca1/revoke")
        await _expire_access(harness.settings)

        refused = await harness.service.get(f"/accounts/{account['id']}/token", headers=bearer(key))
        assert refused.status_code == 409
        refused_at = time.monotonic()
        received = await hook.wait_for(lambda r: bool(_relogins(r)), PROMISED_BOUND)
        assert time.monotonic() - refused_at <= PROMISED_BOUND

        # Asked again: still 409, and still one event (the account had already changed).
        assert (
            await harness.service.get(f"/accounts/{account['id']}/token", headers=bearer(key))
        ).status_code == 409
        (relogin,) = _relogins(received)
        event = Webhook(secret).verify(relogin.body, relogin.headers)
        assert event["account"]["id"] == account["id"]
        assert event["data"] == {"reason": "grant_revoked"}
        assert event["account"]["status"] == "relogin_required"
        assert [r.event["type"] for r in hook.received] == ["account.linked", "account.relogin_required"]


class TestNoSecretAnywhere:
    async def test_events_webhooks_logs_and_metrics_hold_no_token_code_or_secret(
        self, harness: LinkHarness, hook: Receiver, captured_logs: io.StringIO
    ) -> None:
        settings = harness.settings
        _endpoint, webhook_secret = await new_endpoint(settings, hook.url)
        secrets: set[str] = {CLIENT_SECRET, ENCRYPTION_KEY.split(":", 1)[1], webhook_secret}
        secrets.add(webhook_secret.removeprefix("whsec_"))

        authorization_url = await harness.start("owner-a")
        secrets.add(parse_qs(urlsplit(authorization_url).query)["state"][0])
        callback_url = await harness.consent(authorization_url, "Sprzedawca1")
        secrets.add(parse_qs(urlsplit(callback_url).query)["code"][0])
        link_session = returned_params(await harness.callback(callback_url))["link_session"]
        secrets.add(link_session)
        account = (await harness.complete("owner-a", link_session)).json()["account"]
        await harness.link("owner-a", "Sprzedawca1")  # a re-login: account.relinked

        key = await new_api_key(settings, "tokens:read", "accounts:read", "events:read")
        secrets.add(key)
        token = (await harness.service.get(f"/accounts/{account['id']}/token", headers=bearer(key))).json()
        secrets.add(token["access_token"])
        engine = create_async_engine(settings.database_url.get_secret_value())
        async with engine.connect() as connection:
            blob = await connection.scalar(select(Account.refresh_token_ciphertext))
        await engine.dispose()
        assert isinstance(blob, bytes)
        vault = TokenVault(KeyRing(settings.encryption_key_ring))
        secrets.add(vault.open(Account.refresh_token_ciphertext, uuid.UUID(account["id"]), blob))
        # A refused refresh (Allegro echoes the refresh token in its error) makes the event.
        await harness.fake.post("/__fake__/users/Sprzedawca1/expire", json={"what": "both"})
        await _expire_access(settings)
        assert (
            await harness.service.get(f"/accounts/{account['id']}/token", headers=bearer(key))
        ).status_code == 409
        await hook.wait_for(lambda r: bool(_relogins(r)), 20)

        async with httpx.AsyncClient(base_url=harness.service.base_url) as client:
            feed, _ = await read_feed_to_end(client, key, None)
        history = (await harness.service.get(f"/accounts/{account['id']}/events", headers=bearer(key))).text
        owner_history = await harness.service.get(
            f"/accounts/{account['id']}/events", headers=bearer(owner_token("owner-a"))
        )
        metrics = (await harness.service.get("/metrics")).text
        assert [e["type"] for e in feed] == ["account.linked", "account.relinked", "account.relogin_required"]
        assert "allegro_link_events_appended" in metrics and "http.request" in captured_logs.getvalue()

        places = {
            "webhook bodies": "\n".join(r.body for r in hook.received),
            "webhook headers": "\n".join(str(r.headers) for r in hook.received),
            "feed": str(feed),
            "history": history + owner_history.text,
            "logs": captured_logs.getvalue(),
            "metrics": metrics,
        }
        leaked = {
            place: [secret[:10] for secret in secrets if secret and secret in text]
            for place, text in places.items()
        }
        assert leaked == {place: [] for place in places}
