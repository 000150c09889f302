"""Owner JWT time claims: numbers only, an optional maximum age, and a warning when nothing scopes them."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from allegro_link.auth.owner import CLOCK_LEEWAY_SECONDS, OwnerPrincipal, OwnerTokenVerifier
from allegro_link.errors import Unauthenticated
from allegro_link.settings import Settings
from tests.support.factories import OWNER_JWT_SECRET, make_settings
from tests.support.logs import captured_logs

UNUSED_DB = "postgresql+asyncpg://postgres@127.0.0.1:5432/not_used"
MAX_AGE = 3600


def _token(**claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "owner-a", "iat": now, "exp": now + 600, **claims}
    return jwt.encode(
        {k: v for k, v in payload.items() if v is not None}, OWNER_JWT_SECRET, algorithm="HS256"
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _verifier(http: httpx.AsyncClient, **overrides: Any) -> OwnerTokenVerifier:
    settings: Settings = make_settings(UNUSED_DB, **overrides)
    return OwnerTokenVerifier(settings, http)


class TestTimeClaims:
    async def test_a_float_exp_is_a_number_and_accepted(self, http: httpx.AsyncClient) -> None:
        token = _token(exp=time.time() + 600.5)
        assert await _verifier(http).verify(token) == OwnerPrincipal("owner-a")

    @pytest.mark.parametrize("exp", ["99999999999", True, None, {"t": 1}])
    async def test_a_non_numeric_or_missing_exp_is_refused(self, http: httpx.AsyncClient, exp: Any) -> None:
        with pytest.raises(Unauthenticated):
            await _verifier(http).verify(_token(exp=exp))


class TestMaximumAge:
    async def test_without_the_setting_an_old_iat_is_fine(self, http: httpx.AsyncClient) -> None:
        token = _token(iat=int(time.time()) - 30 * 86400)
        assert await _verifier(http).verify(token) == OwnerPrincipal("owner-a")

    async def test_a_token_within_the_maximum_age_is_accepted(self, http: httpx.AsyncClient) -> None:
        verifier = _verifier(http, owner_jwt_max_age_seconds=MAX_AGE)
        token = _token(iat=int(time.time()) - MAX_AGE + 60)
        assert await verifier.verify(token) == OwnerPrincipal("owner-a")

    async def test_a_token_older_than_the_maximum_age_is_refused(self, http: httpx.AsyncClient) -> None:
        verifier = _verifier(http, owner_jwt_max_age_seconds=MAX_AGE)
        # Still far from its exp: the age alone refuses it.
        token = _token(
            iat=int(time.time()) - MAX_AGE - CLOCK_LEEWAY_SECONDS - 5, exp=int(time.time()) + 86400
        )
        with pytest.raises(Unauthenticated, match="expired"):
            await verifier.verify(token)

    async def test_a_token_without_iat_is_refused_when_a_maximum_age_is_set(
        self, http: httpx.AsyncClient
    ) -> None:
        assert await _verifier(http).verify(_token(iat=None)) == OwnerPrincipal("owner-a")
        with pytest.raises(Unauthenticated):
            await _verifier(http, owner_jwt_max_age_seconds=MAX_AGE).verify(_token(iat=None))


class TestStartUpWarning:
    @pytest.mark.parametrize(
        ("issuer", "audience", "warned"),
        [(None, None, True), ("https://idp.example", None, False), (None, "allegro-link", False)],
    )
    def test_warns_when_neither_issuer_nor_audience_is_checked(
        self, http: httpx.AsyncClient, issuer: str | None, audience: str | None, warned: bool
    ) -> None:
        with captured_logs() as sink:
            _verifier(http, owner_jwt_issuer=issuer, owner_jwt_audience=audience)
        events = [json.loads(line) for line in sink.getvalue().splitlines()]
        unscoped = [e for e in events if e["event"] == "auth.owner.unscoped"]
        assert bool(unscoped) is warned
        assert all(e["level"] == "warning" for e in unscoped)
