"""`allegro-link webhooks …`: add prints the secret last, list shows the backlog, errors are one line."""

from __future__ import annotations

import subprocess
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook

from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.rotate import rotate_encryption
from allegro_link.crypto.vault import TokenVault
from allegro_link.settings import Settings, parse_encryption_keys
from allegro_link.webhooks.endpoints import add_endpoint
from allegro_link.webhooks.models import WebhookEndpoint
from tests.support.events import open_session
from tests.support.factories import ENCRYPTION_KEY, OLD_ENCRYPTION_KEY
from tests.test_cli import _run


def _env(database_url: str) -> dict[str, str]:
    return {"ALLEGRO_LINK_DATABASE_URL": database_url, "ALLEGRO_LINK_ENCRYPTION_KEYS": ENCRYPTION_KEY}


def _ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


class TestWebhooksCli:
    async def test_add_list_rotate_replay_remove(self, database_url: str, settings: Settings) -> None:
        env = _env(database_url)
        lines = _ok(
            _run(
                "webhooks",
                "add",
                "--url",
                "https://hooks.example/allegro",
                "--event",
                "account.deleted",
                env=env,
            )
        )
        secret = lines[-1]
        assert secret.startswith("whsec_")
        Webhook(secret)  # the package accepts it
        endpoint_id = next(line.split()[-1] for line in lines if line.startswith("id: "))
        uuid.UUID(endpoint_id)

        async with open_session(settings) as session:
            stored = (await session.scalars(select(WebhookEndpoint))).one()
        assert secret.encode() not in stored.secret_ciphertext  # encrypted at rest
        vault = TokenVault(KeyRing(settings.encryption_key_ring))
        assert vault.open(WebhookEndpoint.secret_ciphertext, stored.id, stored.secret_ciphertext) == secret

        listed = "\n".join(_ok(_run("webhooks", "list", env=env)))
        assert endpoint_id in listed and "account.deleted" in listed and secret not in listed

        rotated = _ok(_run("webhooks", "rotate-secret", endpoint_id, env=env))[-1]
        assert rotated.startswith("whsec_") and rotated != secret
        assert (
            "queued 0 events"
            in _ok(_run("webhooks", "replay", endpoint_id, "--since", "2026-01-01", env=env))[-1]
        )
        _ok(_run("webhooks", "remove", endpoint_id, env=env))
        gone = _run("webhooks", "remove", endpoint_id, env=env)
        assert gone.returncode == 1
        assert len(gone.stderr.strip().splitlines()) == 1

    def test_plain_http_is_only_for_loopback(self, database_url: str) -> None:
        env = _env(database_url)
        refused = _run("webhooks", "add", "--url", "http://hooks.example/allegro", env=env)
        assert refused.returncode == 1
        assert "https://" in refused.stderr
        _ok(_run("webhooks", "add", "--url", "http://127.0.0.1:8787/", env=env))
        _ok(_run("webhooks", "add", "--url", "http://localhost:8787/", env=env))


class TestSecretsUnderKeyRotation:
    async def test_encryption_key_rotate_reseals_webhook_secrets(self, settings: Settings) -> None:
        old_ring = KeyRing(parse_encryption_keys(OLD_ENCRYPTION_KEY))
        new_ring = KeyRing(parse_encryption_keys(f"{ENCRYPTION_KEY},{OLD_ENCRYPTION_KEY}"))
        async with open_session(settings) as session:
            endpoint_id, secret = await add_endpoint(
                session, TokenVault(old_ring), url="https://hooks.example/a", event_types=[]
            )
            await session.commit()
            engine = session.bind
            assert isinstance(engine, AsyncEngine)
            report = await rotate_encryption(engine, new_ring)
            stored = await session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
        assert report.rotated["webhook_endpoints.secret_ciphertext"] == 1
        assert stored is not None
        assert TokenVault(new_ring).key_ring.needs_rotation(stored.secret_ciphertext) is False
        assert (
            TokenVault(new_ring).open(
                WebhookEndpoint.secret_ciphertext, endpoint_id, stored.secret_ciphertext
            )
            == secret
        )
