"""No token, code, state, client secret or key in any log line, whatever the outcome."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account
from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import utcnow
from allegro_link.logs import redact_text
from allegro_link.oauth.models import LinkSession
from tests.support.factories import CLIENT_SECRET, ENCRYPTION_KEY, bearer, owner_token
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness, returned_params
from tests.support.logs import captured_logs


@pytest.fixture(name="captured_logs")
def _captured_logs() -> Iterator[io.StringIO]:
    with captured_logs("DEBUG") as sink:
        yield sink


class TestSecretsStayOutOfLogs:
    async def test_full_journey_logs_no_secret(
        self, harness: LinkHarness, captured_logs: io.StringIO
    ) -> None:
        secrets: set[str] = {CLIENT_SECRET, ENCRYPTION_KEY.split(":", 1)[1]}

        authorization_url = await harness.start("owner-a")
        secrets.add(parse_qs(urlsplit(authorization_url).query)["state"][0])
        callback_url = await harness.consent(authorization_url, "Sprzedawca1")
        secrets.add(parse_qs(urlsplit(callback_url).query)["code"][0])
        callback = await harness.callback(callback_url)
        link_session = returned_params(callback)["link_session"]
        secrets.add(link_session)
        account = (await harness.complete("owner-a", link_session)).json()["account"]

        key = await new_api_key(harness.settings, "tokens:read")
        secrets.add(key)
        first = (await harness.service.get(f"/accounts/{account['id']}/token", headers=bearer(key))).json()
        secrets.add(first["access_token"])
        engine = create_async_engine(harness.settings.database_url.get_secret_value())
        async with engine.begin() as connection:
            await connection.execute(update(Account).values(access_token_expires_at=utcnow()))
        await harness.service.get(f"/accounts/{account['id']}/token", headers=bearer(key))
        # A refused refresh: Allegro echoes the refresh token in its error description.
        async with engine.connect() as connection:
            blob = await connection.scalar(select(Account.refresh_token_ciphertext))
        assert isinstance(blob, bytes)
        vault = TokenVault(KeyRing(harness.settings.encryption_key_ring))
        secrets.add(vault.open(Account.refresh_token_ciphertext, uuid.UUID(account["id"]), blob))
        await harness.fake.post("/__fake__/users/Sprzedawca1/expire", json={"what": "both"})
        async with engine.begin() as connection:
            await connection.execute(update(Account).values(access_token_expires_at=utcnow()))
        await engine.dispose()
        refused = await harness.service.get(f"/accounts/{account['id']}/token", headers=bearer(key))
        assert refused.status_code == 409
        # And a replayed callback, which is refused with 400.
        assert (await harness.callback(callback_url)).status_code == 400

        logs = captured_logs.getvalue()
        assert "http.request" in logs and "token.refreshed" in logs  # the capture works
        leaked = [secret[:12] for secret in secrets if secret and secret in logs]
        assert leaked == []


class TestRedaction:
    @pytest.mark.parametrize(
        ("text", "secret"),
        [
            ("GET /oauth/callback?code=abc123&state=xyz", "abc123"),
            ("Invalid refresh token: eyJhbGciOi.eyJzdWIiOiIx.sig", "eyJzdWIiOiIx"),
            ("Authorization: Bearer alk_abcdefghijkl_secretsecretsecret", "secretsecret"),
            ("Basic Y2lkOmNzZWNyZXQ=", "Y2lkOmNzZWNyZXQ="),
            ('{"refresh_token": "r-123"}', "r-123"),
        ],
    )
    def test_token_like_text_is_scrubbed(self, text: str, secret: str) -> None:
        assert secret not in redact_text(text)


class _Observed:
    """Everything the outside world sees of the service: response bodies, redirect URLs, metrics."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, int, str]] = []  # (route, status, body)
        self.locations: list[str] = []

    async def record(self, response: httpx.Response) -> None:
        await response.aread()
        self.bodies.append((response.request.url.path, response.status_code, response.text))
        if "location" in response.headers:
            self.locations.append(response.headers["location"])


async def _held_secrets(harness: LinkHarness) -> set[str]:
    """Every token, refresh token and PKCE verifier currently stored, decrypted."""
    vault = TokenVault(KeyRing(harness.settings.encryption_key_ring))
    engine = create_async_engine(harness.settings.database_url.get_secret_value())
    found: set[str] = set()
    try:
        async with engine.connect() as connection:
            for row in (await connection.execute(select(Account))).all():
                for column in (Account.access_token_ciphertext, Account.refresh_token_ciphertext):
                    if (blob := getattr(row, column.key)) is not None:
                        found.add(vault.open(column, row.id, blob))
            for session_row in (await connection.execute(select(LinkSession))).all():
                for column in (
                    LinkSession.code_verifier_ciphertext,
                    LinkSession.access_token_ciphertext,
                    LinkSession.refresh_token_ciphertext,
                ):
                    if (blob := getattr(session_row, column.key)) is not None:
                        found.add(vault.open(column, session_row.id, blob))
    finally:
        await engine.dispose()
    return found


class _Journey:
    """Drives every flow, good and bad, collecting each secret it meets on the way."""

    FAULTS = "/__fake__/faults"

    def __init__(self, harness: LinkHarness) -> None:
        self.harness = harness
        self.secrets: set[str] = {CLIENT_SECRET, ENCRYPTION_KEY.split(":", 1)[1]}
        self.link_sessions: set[str] = set()  # allowed in the redirect of a completed callback

    async def snapshot(self) -> None:
        self.secrets.update(await _held_secrets(self.harness))

    def remember_query(self, url: str, name: str) -> str:
        value = parse_qs(urlsplit(url).query)[name][0]
        self.secrets.add(value)
        return value

    async def links(self) -> str:
        harness = self.harness
        authorization_url = await harness.start("owner-a")
        await self.snapshot()  # the PKCE verifier, held encrypted until the callback
        self.remember_query(authorization_url, "state")
        callback_url = await harness.consent(authorization_url, "Sprzedawca1")
        self.remember_query(callback_url, "code")
        link_session = returned_params(await harness.callback(callback_url))["link_session"]
        self.secrets.add(link_session)
        self.link_sessions.add(link_session)
        await self.snapshot()  # the tokens held for completion
        account_id: str = (await harness.complete("owner-a", link_session)).json()["account"]["id"]
        await harness.callback(callback_url)  # replayed: 400
        await harness.complete("owner-b", link_session)  # someone else's: 404

        # A re-login as someone else (mismatch), and links that fail at Allegro in every way.
        mismatch_url = await harness.consent(await harness.start("owner-a", account_id=account_id), "Inny")
        self.remember_query(mismatch_url, "code")
        mismatch = returned_params(await harness.callback(mismatch_url))["link_session"]
        self.secrets.add(mismatch)
        self.link_sessions.add(mismatch)
        assert (await harness.complete("owner-a", mismatch)).status_code == 409
        for fault in ({"kind": "reset"}, {"kind": "truncate"}, {"kind": "status", "status": 503}):
            failing_url = await harness.consent(await harness.start("owner-a"), "Sprzedawca1")
            self.remember_query(failing_url, "code")
            await harness.fake.post(self.FAULTS, json={"endpoint": "token", **fault})
            await harness.callback(failing_url)
        cancelled = await harness.start("owner-a")
        await harness.service.get(f"/oauth/callback?error=access_denied&state={_state_of(cancelled)}")
        return account_id

    async def tokens(self, account_id: str) -> None:
        harness = self.harness
        key = await new_api_key(harness.settings, "tokens:read", "accounts:read")
        self.secrets.add(key)
        path = f"/accounts/{account_id}/token"
        first = (await harness.service.get(path, headers=bearer(key))).json()["access_token"]
        self.secrets.add(first)
        for fault in ({"kind": "reset"}, {"kind": "truncate"}, {"kind": "status", "status": 429}):
            await self.stale()
            await harness.fake.post(self.FAULTS, json={"endpoint": "token", **fault})
            assert (await harness.service.get(path, headers=bearer(key))).status_code == 503
            # The next read refreshes (through Allegro's grace after a truncated answer) and succeeds.
            recovered = await harness.service.get(path, headers=bearer(key))
            assert recovered.status_code == 200, recovered.text
            await self.snapshot()
        await self.stale()
        refreshed = await harness.service.post(
            f"{path}/refresh", json={"rejected_token": first}, headers=bearer(key)
        )
        self.secrets.add(refreshed.json()["access_token"])
        await self.snapshot()
        await harness.service.post(f"{path}/refresh", json={"rejected_token": "x" * 50}, headers=bearer(key))
        await harness.fake.post("/__fake__/users/Sprzedawca1/expire", json={"what": "both"})
        await self.stale()
        await self.snapshot()
        refused = await harness.service.get(path, headers=bearer(key))  # invalid_grant echoes the token
        assert refused.status_code == 409

    async def stale(self) -> None:
        engine = create_async_engine(self.harness.settings.database_url.get_secret_value())
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    update(Account).values(
                        access_token_expires_at=utcnow(), last_refreshed_at=utcnow() - timedelta(minutes=1)
                    )
                )
        finally:
            await engine.dispose()

    def found_in(self, text: str, *, allowed: set[str] | None = None) -> list[str]:
        return [s[:12] for s in self.secrets if s and s in text and s not in (allowed or set())]


class TestSecretsStayOutOfEverythingSeen:
    async def test_logs_error_bodies_redirects_and_metrics_carry_no_secret(
        self, harness: LinkHarness, captured_logs: io.StringIO
    ) -> None:
        observed = _Observed()
        harness.service.event_hooks["response"].append(observed.record)
        journey = _Journey(harness)
        owner_jwt = owner_token("owner-a")
        journey.secrets.add(owner_jwt)

        await journey.tokens(await journey.links())
        await harness.service.get("/accounts?login=Sprzedawca1", headers=bearer(owner_jwt))
        metrics = (await harness.service.get("/metrics")).text

        logs = captured_logs.getvalue()
        assert "token.refresh.unavailable" in logs and "link.completed" in logs  # the flows ran
        assert journey.found_in(logs) == []
        assert journey.found_in(metrics) == []
        # A body may carry a secret only where the contract puts it: the access token in a token
        # answer, the state in the authorization URL.
        for path, status, body in observed.bodies:
            if not (status < 300 and path.endswith(("/token", "/refresh", "/authorize"))):
                assert journey.found_in(body) == [], (path, status)
        # Redirects carry nothing but the link_session of a completed callback.
        for location in observed.locations:
            assert journey.found_in(location, allowed=journey.link_sessions) == [], location
        assert len(observed.locations) >= 6


def _state_of(authorization_url: str) -> str:
    return parse_qs(urlsplit(authorization_url).query)["state"][0]
