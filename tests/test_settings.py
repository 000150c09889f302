"""Start-up validation: one clear message that names the bad variable."""

from __future__ import annotations

import base64

import pytest

from allegro_link.settings import ConfigError, DatabaseSettings, Settings, load_settings
from tests.support.factories import make_settings

GOOD_DB = "postgresql+asyncpg://postgres@127.0.0.1:5432/allegro_link"


def _load(**overrides: object) -> Settings:
    base = make_settings(GOOD_DB).model_dump()
    base.update(overrides)
    return load_settings(Settings, _env_file=None, **{k: _plain(v) for k, v in base.items()})


def _plain(value: object) -> object:
    get = getattr(value, "get_secret_value", None)
    return get() if callable(get) else value


class TestSettings:
    def test_valid_settings_load(self) -> None:
        settings = _load()
        assert settings.auth_base_url == "https://allegro.test"
        assert settings.encryption_key_ring[0].key_id == "t1"

    def test_production_hosts_by_default(self) -> None:
        settings = _load(allegro_auth_url=None, allegro_api_url=None)
        assert settings.auth_base_url == "https://allegro.pl"
        assert settings.api_base_url == "https://api.allegro.pl"

    def test_sandbox_environment_selects_sandbox_hosts(self) -> None:
        settings = _load(allegro_auth_url=None, allegro_api_url=None, allegro_environment="sandbox")
        assert settings.auth_base_url == "https://allegro.pl.allegrosandbox.pl"

    def test_missing_variable_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("ALLEGRO_LINK_DATABASE_URL", raising=False)
        with pytest.raises(ConfigError, match="ALLEGRO_LINK_DATABASE_URL is required but not set"):
            load_settings(DatabaseSettings, _env_file=None)

    def test_bad_database_url_is_named(self) -> None:
        with pytest.raises(ConfigError, match=r"ALLEGRO_LINK_DATABASE_URL must use the postgresql\+asyncpg"):
            _load(database_url="mysql://root@localhost/db")

    def test_unparseable_database_url_is_named(self) -> None:
        with pytest.raises(ConfigError, match="ALLEGRO_LINK_DATABASE_URL"):
            _load(database_url="not a url")

    def test_short_encryption_key_is_named(self) -> None:
        short = "k1:" + base64.b64encode(b"0123456789").decode()
        with pytest.raises(
            ConfigError, match=r"ALLEGRO_LINK_ENCRYPTION_KEYS key 'k1' must be 32 bytes.*got 10"
        ):
            _load(encryption_keys=short)

    def test_allowlist_entry_without_scheme_is_named(self) -> None:
        with pytest.raises(ConfigError, match=r"ALLEGRO_LINK_RETURN_URL_ALLOWLIST.*absolute http"):
            _load(return_url_allowlist="panel.example.com/allegro/")

    def test_allowlist_entry_must_end_with_slash(self) -> None:
        with pytest.raises(ConfigError, match="must end with '/'"):
            _load(return_url_allowlist="https://panel.example.com/allegro")

    def test_allowlist_is_comma_separated(self) -> None:
        settings = _load(return_url_allowlist="https://a.example/, http://localhost:3000/x/")
        assert settings.return_url_allowlist == ["https://a.example/", "http://localhost:3000/x/"]

    def test_exactly_one_owner_key_source(self) -> None:
        with pytest.raises(ConfigError, match="exactly one of ALLEGRO_LINK_OWNER_JWT_SECRET"):
            _load(owner_jwt_secret=None)
        with pytest.raises(ConfigError, match="exactly one of"):
            _load(owner_jwt_jwks_url="https://idp.example/jwks.json")

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("owner_jwt_jwks_url", "http://idp.example/jwks.json"),
            ("allegro_auth_url", "http://allegro.example"),
            ("allegro_api_url", "http://api.allegro.example"),
            ("redirect_uri", "http://link.example/oauth/callback"),
            ("return_url_allowlist", "https://panel.example.com/,http://panel.example.com/"),
            ("allegro_auth_url", "http://127.0.0.1.evil.example"),
            ("redirect_uri", "http://localhost.evil.example/oauth/callback"),
            ("allegro_api_url", "http://10.0.0.1"),
            ("allegro_api_url", "http://[::2]:8000"),
        ],
    )
    def test_plain_http_is_refused_off_loopback(self, variable: str, value: str) -> None:
        overrides: dict[str, object] = {variable: value}
        if variable == "owner_jwt_jwks_url":
            overrides["owner_jwt_secret"] = None
        with pytest.raises(ConfigError, match=f"ALLEGRO_LINK_{variable.upper()} .*must use https") as caught:
            _load(**overrides)
        assert "\n" not in str(caught.value)

    @pytest.mark.parametrize(
        "host", ["127.0.0.1", "127.8.9.10:8000", "localhost", "LocalHost:3000", "[::1]:8000"]
    )
    def test_plain_http_is_allowed_on_loopback(self, host: str) -> None:
        settings = _load(
            owner_jwt_secret=None,
            owner_jwt_jwks_url=f"http://{host}/jwks.json",
            allegro_auth_url=f"http://{host}",
            allegro_api_url=f"http://{host}",
            redirect_uri=f"http://{host}/oauth/callback",
            return_url_allowlist=f"http://{host}/panel/",
        )
        assert settings.redirect_uri == f"http://{host}/oauth/callback"
        assert settings.return_url_allowlist == [f"http://{host}/panel/"]

    def test_owner_jwt_max_age_is_optional_and_positive(self) -> None:
        assert _load().owner_jwt_max_age_seconds is None
        assert _load(owner_jwt_max_age_seconds="3600").owner_jwt_max_age_seconds == 3600
        with pytest.raises(ConfigError, match="ALLEGRO_LINK_OWNER_JWT_MAX_AGE_SECONDS"):
            _load(owner_jwt_max_age_seconds="0")

    def test_short_jwt_secret_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="ALLEGRO_LINK_OWNER_JWT_SECRET must be at least 32 bytes"):
            _load(owner_jwt_secret="short")

    def test_secrets_never_appear_in_the_message(self) -> None:
        with pytest.raises(ConfigError) as caught:
            _load(database_url="mysql://user:hunter2-secret@localhost/db")
        assert "hunter2" not in str(caught.value)

    def test_settings_are_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ALLEGRO_LINK_DATABASE_URL", GOOD_DB)
        monkeypatch.setenv("ALLEGRO_LINK_DB_POOL_SIZE", "3")
        assert load_settings(DatabaseSettings, _env_file=None).db_pool_size == 3
