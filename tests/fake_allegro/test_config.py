"""FakeAllegroConfig.from_env: dev defaults and ALLEGRO_LINK_FAKE_* overrides."""

from __future__ import annotations

import pytest

from allegro_link.fake_allegro import FakeAllegroConfig
from allegro_link.fake_allegro.config import FakeConfigError


def test_defaults_are_the_dev_client_with_controls_off() -> None:
    config = FakeAllegroConfig.from_env({})

    (client,) = config.clients
    assert client.client_id == "allegro-link-dev"
    assert client.client_secret == "allegro-link-dev-secret"
    assert list(client.redirect_uris) == ["http://localhost:8000/oauth/callback"]
    assert config.controls_enabled is False
    assert (config.access_token_ttl, config.refresh_token_ttl) == (43200, 90 * 86400)
    assert (config.code_ttl, config.refresh_grace) == (10, 60)


def test_every_variable_is_read() -> None:
    config = FakeAllegroConfig.from_env(
        {
            "ALLEGRO_LINK_FAKE_CLIENT_ID": "id",
            "ALLEGRO_LINK_FAKE_CLIENT_SECRET": "secret",
            "ALLEGRO_LINK_FAKE_REDIRECT_URIS": "http://localhost:1/cb, https://app.example/cb",
            "ALLEGRO_LINK_FAKE_ACCESS_TTL": "60",
            "ALLEGRO_LINK_FAKE_REFRESH_TTL": "3600",
        }
    )

    (client,) = config.clients
    assert (client.client_id, client.client_secret) == ("id", "secret")
    assert list(client.redirect_uris) == ["http://localhost:1/cb", "https://app.example/cb"]
    assert (config.access_token_ttl, config.refresh_token_ttl) == (60, 3600)


def test_controls_are_off_unless_asked_for_in_code() -> None:
    assert FakeAllegroConfig().controls_enabled is False


@pytest.mark.parametrize(
    "variables",
    [
        {"ALLEGRO_LINK_FAKE_ACCESS_TTL": "soon"},
        {"ALLEGRO_LINK_FAKE_REFRESH_TTL": "1"},
        # No variable switches the controls on (only --controls does); a leftover one is an error.
        {"ALLEGRO_LINK_FAKE_CONTROLS": "1"},
    ],
)
def test_bad_values_are_refused(variables: dict[str, str]) -> None:
    with pytest.raises(FakeConfigError):
        FakeAllegroConfig.from_env(variables)
