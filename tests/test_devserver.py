"""What `allegro-link dev` prints is true: the database URL and exports reach its database, the curl
sequence of its banner links an account (followed here step by step, over real HTTP), and its webhook
commands are the CLI's and work with just those exports."""

from __future__ import annotations

import re
import secrets
import shlex
from urllib.parse import parse_qs, urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from allegro_link.app import create_app
from allegro_link.cli import build_parser
from allegro_link.demo.owner_token import OwnerTokenMinter
from allegro_link.devserver import (
    DEV_OWNER_ID,
    WEBHOOK_LISTEN_PORT,
    _start_fake_allegro,
    banner,
    dev_settings,
)
from allegro_link.oauth.return_to import ReturnToPolicy
from allegro_link.settings import Settings
from tests.support.factories import ENCRYPTION_KEY
from tests.support.live import REQUEST_TIMEOUT, free_port, serve_in_thread
from tests.test_cli import _run

API_KEY = "alk_shown_in_the_banner"


def settings_and_banner(database_url: str) -> tuple[Settings, OwnerTokenMinter, str]:
    service_port, fake_port = free_port(), free_port()
    dev_secrets = {"owner_jwt_secret": secrets.token_urlsafe(48), "encryption_keys": ENCRYPTION_KEY}
    settings = dev_settings(database_url, dev_secrets, port=service_port, fake_port=fake_port)
    minter = OwnerTokenMinter.for_settings(settings)
    text = banner(
        settings,
        f"http://127.0.0.1:{service_port}",
        f"http://127.0.0.1:{fake_port}",
        minter.mint(DEV_OWNER_ID).token,
        API_KEY,
    )
    return settings, minter, text


def exported(text: str) -> dict[str, str]:
    """The variables of the banner's `export` line."""
    (export,) = [line.strip() for line in text.splitlines() if line.strip().startswith("export ")]
    return dict(word.split("=", 1) for word in shlex.split(export)[1:])


def webhook_commands(text: str) -> tuple[list[str], list[str]]:
    """The banner's `webhooks add` and `webhooks listen` commands, as argv without `allegro-link`."""
    commands = [
        shlex.split(line.strip())[1:]
        for line in text.splitlines()
        if line.strip().startswith("allegro-link webhooks ")
    ]
    (add,) = [argv for argv in commands if argv[1] == "add"]
    (listen,) = [argv for argv in commands if argv[1] == "listen"]
    return add, listen


class TestBanner:
    def test_prints_the_database_url_and_exports_that_point_the_cli_at_it(self, database_url: str) -> None:
        settings, _, text = settings_and_banner(database_url)
        assert f"database      {database_url}" in text
        assert exported(text) == {
            "ALLEGRO_LINK_DATABASE_URL": database_url,
            "ALLEGRO_LINK_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        }

    def test_the_suggested_return_to_is_allowed_and_is_not_the_demo_panel(self, database_url: str) -> None:
        settings, _, text = settings_and_banner(database_url)
        (return_to,) = re.findall(r'"return_to": "([^"]+)"', text)
        assert urlsplit(return_to).path == "/demo/linked"  # the panel would complete the link itself
        ReturnToPolicy(settings.return_url_allowlist).check(return_to)

    def test_its_webhook_commands_parse_and_point_the_receiver_at_the_added_url(
        self, database_url: str
    ) -> None:
        _, _, text = settings_and_banner(database_url)
        add, listen = webhook_commands(text)
        assert listen[-2:] == ["--secret", "<whsec_…>"]  # the placeholder for the last line add prints

        parser = build_parser()
        added = parser.parse_args(add)
        receiver = parser.parse_args([*listen[:-1], "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])

        assert urlsplit(added.url).hostname == receiver.host == "127.0.0.1"
        assert urlsplit(added.url).port == receiver.port == WEBHOOK_LISTEN_PORT
        assert added.event == []  # every event type

    def test_its_webhooks_add_works_with_just_the_exports_and_prints_a_secret_for_listen(
        self, database_url: str
    ) -> None:
        _, _, text = settings_and_banner(database_url)
        add, _ = webhook_commands(text)

        # _run keeps no ALLEGRO_LINK_* variable of this process and runs outside the checkout (no .env).
        result = _run(*add, env=exported(text))

        assert result.returncode == 0, result.stderr
        secret = result.stdout.strip().splitlines()[-1]
        assert secret.startswith("whsec_")
        Webhook(secret)  # what `webhooks listen --secret` verifies with

    async def test_its_curl_sequence_links_an_account(self, database_url: str) -> None:
        settings, minter, text = settings_and_banner(database_url)
        (return_to,) = re.findall(r'"return_to": "([^"]+)"', text)
        owner = {"Authorization": f"Bearer {minter.mint(DEV_OWNER_ID).token}"}
        fake_server, fake_thread = _start_fake_allegro(
            settings, "127.0.0.1", int(settings.auth_base_url.rsplit(":", 1)[1])
        )
        port = int(urlsplit(settings.redirect_uri).port or 0)
        try:
            app = create_app(settings, owner_token_minter=minter)
            with serve_in_thread(app, port=port) as base:
                async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT) as http:
                    started = await http.post(
                        "/accounts/authorize", json={"return_to": return_to}, headers=owner
                    )
                    assert started.status_code == 201, started.text
                    authorization = parse_qs(urlsplit(started.json()["authorization_url"]).query)
                    # "open the authorization_url, type any login, click 'Powiąż konto'":
                    async with httpx.AsyncClient(
                        base_url=settings.auth_base_url, timeout=REQUEST_TIMEOUT
                    ) as fake:
                        consent = await fake.post(
                            "/__fake__/authorize",
                            json={
                                "login": "Sprzedawca",
                                **{
                                    name: authorization[name][0]
                                    for name in (
                                        "client_id",
                                        "redirect_uri",
                                        "state",
                                        "code_challenge",
                                        "code_challenge_method",
                                    )
                                },
                            },
                        )
                    assert consent.status_code == 200, consent.text
                    # The browser follows Allegro's redirect to the callback, and ours to return_to.
                    async with httpx.AsyncClient(follow_redirects=True, timeout=REQUEST_TIMEOUT) as browser:
                        landed = await browser.get(consent.json()["redirect"])
                    assert landed.status_code == 200
                    assert str(landed.url).startswith(return_to)
                    # "return_to then shows the link_session":
                    match = re.search(r"<th>link_session</th><td><code>([^<]+)</code>", landed.text)
                    assert match is not None, landed.text
                    completed = await http.post(
                        "/oauth/complete", json={"link_session": match.group(1)}, headers=owner
                    )
        finally:
            fake_server.should_exit = True
            fake_thread.join(timeout=5)

        assert completed.status_code == 200, completed.text
        assert completed.json()["result"] == "linked"
        assert completed.json()["account"]["login"] == "Sprzedawca"
