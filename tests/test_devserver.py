"""What `allegro-link dev` prints is true: the database URL and exports reach its database, and the
curl sequence of its banner links an account (followed here step by step, over real HTTP)."""

from __future__ import annotations

import re
import secrets
import shlex
from urllib.parse import parse_qs, urlsplit

import httpx

from allegro_link.app import create_app
from allegro_link.demo.owner_token import OwnerTokenMinter
from allegro_link.devserver import DEV_OWNER_ID, _start_fake_allegro, banner, dev_settings
from allegro_link.oauth.return_to import ReturnToPolicy
from allegro_link.settings import Settings
from tests.support.factories import ENCRYPTION_KEY
from tests.support.live import free_port, serve_in_thread

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


class TestBanner:
    def test_prints_the_database_url_and_exports_that_point_the_cli_at_it(self, database_url: str) -> None:
        settings, _, text = settings_and_banner(database_url)
        assert f"database      {database_url}" in text
        (export,) = [line.strip() for line in text.splitlines() if line.strip().startswith("export ")]
        assignments = dict(word.split("=", 1) for word in shlex.split(export)[1:])
        assert assignments == {
            "ALLEGRO_LINK_DATABASE_URL": database_url,
            "ALLEGRO_LINK_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        }

    def test_the_suggested_return_to_is_allowed_and_is_not_the_demo_panel(self, database_url: str) -> None:
        settings, _, text = settings_and_banner(database_url)
        (return_to,) = re.findall(r'"return_to": "([^"]+)"', text)
        assert urlsplit(return_to).path == "/demo/linked"  # the panel would complete the link itself
        ReturnToPolicy(settings.return_url_allowlist).check(return_to)

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
                async with httpx.AsyncClient(base_url=base) as http:
                    started = await http.post(
                        "/accounts/authorize", json={"return_to": return_to}, headers=owner
                    )
                    assert started.status_code == 201, started.text
                    authorization = parse_qs(urlsplit(started.json()["authorization_url"]).query)
                    # "open the authorization_url, type any login, click 'Powiąż konto'":
                    async with httpx.AsyncClient(base_url=settings.auth_base_url) as fake:
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
                    async with httpx.AsyncClient(follow_redirects=True) as browser:
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
