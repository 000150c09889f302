"""No token, code, state, client secret or key in any log line, whatever the outcome."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account
from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import utcnow
from allegro_link.logs import configure_logging, redact_text
from tests.support.factories import CLIENT_SECRET, ENCRYPTION_KEY, bearer
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness, returned_params


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("DEBUG", json=True)
    sink = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(sink)
    yield sink
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


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
        secrets.add(vault.open("accounts", uuid.UUID(account["id"]), "refresh_token_ciphertext", blob))
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
