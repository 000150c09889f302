"""Forged owner JWTs, revoked API keys, and API key comparison that does not leak how much matched.

tests/accounts/test_accounts_api.py covers the basic JWT refusals (wrong key, expired, no exp or sub,
alg=none, wrong audience); these are the ones an attacker tries next.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from allegro_link.app import create_app
from allegro_link.auth import api_keys
from allegro_link.auth.api_keys import ApiKeyVerifier, revoke_api_key
from allegro_link.auth.owner import CLOCK_LEEWAY_SECONDS
from allegro_link.db import create_engine, create_sessionmaker
from allegro_link.settings import Settings
from tests.support.factories import OWNER_JWT_SECRET, bearer, owner_token
from tests.support.keys import new_api_key
from tests.support.live import lifespan

PROBLEM = "application/problem+json"
ISSUER = "https://idp.example"
AUDIENCE = "allegro-link"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _handmade(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)))


def _hs256(
    header: dict[str, Any], claims: dict[str, Any], key: str = OWNER_JWT_SECRET, digest: str = "sha256"
) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key.encode(), signing_input.encode(), getattr(hashlib, digest)).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "owner-a", "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE, **extra}


@pytest.fixture
async def strict_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app that checks issuer and audience, with a short API key cache."""
    strict = settings.model_copy(
        update={"owner_jwt_issuer": ISSUER, "owner_jwt_audience": AUDIENCE, "api_key_cache_seconds": 0.3}
    )
    async with lifespan(create_app(strict)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


def _swap_claims(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _valid() -> str:
    return jwt.encode(_claims(), OWNER_JWT_SECRET, algorithm="HS256")


class TestOwnerJwts:
    async def test_the_reference_token_is_accepted(self, strict_client: httpx.AsyncClient) -> None:
        assert (await strict_client.get("/accounts", headers=bearer(_valid()))).status_code == 200

    @pytest.mark.parametrize(
        ("label", "token"),
        [
            ("alg None", _handmade({"alg": "None", "typ": "JWT"}, _claims())),
            ("alg NONE", _handmade({"alg": "NONE", "typ": "JWT"}, _claims())),
            ("alg none, stray signature", _handmade({"alg": "none"}, _claims(), b"sig")),
            ("HS512 with the right secret", _hs256({"alg": "HS512"}, _claims(), digest="sha512")),
            ("HS384 with the right secret", _hs256({"alg": "HS384"}, _claims(), digest="sha384")),
            ("RS256 header, HS256 signature", _hs256({"alg": "RS256", "typ": "JWT"}, _claims())),
            ("no alg at all", _hs256({"typ": "JWT"}, _claims())),
            ("signature stripped", _valid().rsplit(".", 1)[0] + "."),
            ("signature truncated", _valid()[:-4]),
            (
                "signature of another token",
                _valid().rsplit(".", 1)[0] + "." + owner_token("x").rsplit(".")[2],
            ),
            ("claims swapped after signing", _swap_claims(_valid(), sub="owner-b")),
            ("empty secret", _hs256({"alg": "HS256", "typ": "JWT"}, _claims(), key="")),
            (
                "secret with a trailing newline",
                jwt.encode(_claims(), OWNER_JWT_SECRET + "\n", algorithm="HS256"),
            ),
            (
                "expired beyond the leeway",
                jwt.encode(_claims(exp=int(time.time()) - CLOCK_LEEWAY_SECONDS - 5), OWNER_JWT_SECRET),
            ),
            ("not yet valid (nbf)", jwt.encode(_claims(nbf=int(time.time()) + 3600), OWNER_JWT_SECRET)),
            ("issued in the future", jwt.encode(_claims(iat=int(time.time()) + 3600), OWNER_JWT_SECRET)),
            ("wrong issuer", jwt.encode(_claims(iss="https://evil.example"), OWNER_JWT_SECRET)),
            ("no issuer", jwt.encode({k: v for k, v in _claims().items() if k != "iss"}, OWNER_JWT_SECRET)),
            ("no audience", jwt.encode({k: v for k, v in _claims().items() if k != "aud"}, OWNER_JWT_SECRET)),
            ("audience list without ours", jwt.encode(_claims(aud=["a", "b"]), OWNER_JWT_SECRET)),
            (
                "exp a numeric string",
                jwt.encode(_claims(exp=str(int(time.time()) + 10**9)), OWNER_JWT_SECRET),
            ),
            ("exp a list", jwt.encode(_claims(exp=[int(time.time()) + 600]), OWNER_JWT_SECRET)),
            ("iat a numeric string", jwt.encode(_claims(iat=str(int(time.time()))), OWNER_JWT_SECRET)),
            ("nbf a numeric string", jwt.encode(_claims(nbf=str(int(time.time()) - 60)), OWNER_JWT_SECRET)),
            ("numeric subject", jwt.encode(_claims(sub=12345), OWNER_JWT_SECRET)),
            ("list subject", jwt.encode(_claims(sub=["owner-a"]), OWNER_JWT_SECRET)),
            ("two dots only", ".."),
            ("payload not JSON", ".".join(_b64(part) for part in (b'{"alg":"HS256"}', b"not json", b"x"))),
        ],
    )
    async def test_forged_tokens_are_401(
        self, strict_client: httpx.AsyncClient, label: str, token: str
    ) -> None:
        response = await strict_client.get("/accounts", headers=bearer(token))
        assert response.status_code == 401, label
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"] == "Bearer"
        assert token not in response.text

    async def test_the_clock_leeway_is_bounded(self, strict_client: httpx.AsyncClient) -> None:
        just_expired = jwt.encode(_claims(exp=int(time.time()) - CLOCK_LEEWAY_SECONDS + 5), OWNER_JWT_SECRET)
        assert (await strict_client.get("/accounts", headers=bearer(just_expired))).status_code == 200

    async def test_an_audience_list_with_ours_is_accepted(self, strict_client: httpx.AsyncClient) -> None:
        token = jwt.encode(_claims(aud=["other", AUDIENCE]), OWNER_JWT_SECRET)
        assert (await strict_client.get("/accounts", headers=bearer(token))).status_code == 200

    async def test_key_location_headers_are_ignored(self, strict_client: httpx.AsyncClient) -> None:
        # jku/x5u/kid must not make the service fetch or pick a key: the configured secret decides.
        header = {"alg": "HS256", "typ": "JWT", "jku": "https://evil.example/jwks", "kid": "../../x"}
        forged = _hs256(header, _claims(sub="owner-evil"), key="attacker-secret-0123456789-abcdefgh")
        assert (await strict_client.get("/accounts", headers=bearer(forged))).status_code == 401

    @pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer\t", ""])
    async def test_other_schemes_are_401(self, strict_client: httpx.AsyncClient, scheme: str) -> None:
        response = await strict_client.get("/accounts", headers={"Authorization": f"{scheme} {_valid()}"})
        assert response.status_code == 401


class TestRevokedApiKey:
    async def test_a_revoked_key_is_refused_once_the_cache_ttl_has_passed(
        self, strict_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        key = await new_api_key(settings, "accounts:read", name="revoked-soon")
        assert (await strict_client.get("/accounts", headers=bearer(key))).status_code == 200
        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine).begin() as session:
                assert await revoke_api_key(session, "revoked-soon")
        finally:
            await engine.dispose()
        await asyncio.sleep(0.4)  # the app's cache TTL is 0.3 s
        for _ in range(3):
            response = await strict_client.get("/accounts", headers=bearer(key))
            assert response.status_code == 401
            assert response.headers["content-type"] == PROBLEM


class _Recorder:
    """Records what verification hashes and compares, without changing it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashed: list[str] = []
        self.compared: list[tuple[int, int]] = []
        real_hash, real_compare = api_keys.hash_api_key, hmac.compare_digest

        def hash_api_key(key: str) -> bytes:
            self.hashed.append(key)
            return real_hash(key)

        def compare_digest(a: bytes, b: bytes) -> bool:
            self.compared.append((len(a), len(b)))
            return real_compare(a, b)

        monkeypatch.setattr(api_keys, "hash_api_key", hash_api_key)
        monkeypatch.setattr(hmac, "compare_digest", compare_digest)  # as api_keys calls it

    def reset(self) -> None:
        self.hashed.clear()
        self.compared.clear()


class TestKeyComparisonTiming:
    """Structural, so it cannot flake: whatever part of the key matches, the same work is done.

    Every well-formed key is hashed whole (SHA-256) and the digest compared with the stored digest by
    hmac.compare_digest, exactly once, with equal lengths; an unknown prefix compares against a dummy
    digest. A caller therefore learns nothing from how long a near miss takes: the digests of two keys
    that share a long prefix are no more alike than those of two unrelated keys.

    The candidates carry a correct check (the CRC at the end of a key): a wrong one is refused before
    any of this, which tells the caller only what it can compute itself (the check depends on nothing
    secret).
    """

    async def test_every_candidate_costs_one_full_hash_and_one_constant_time_compare(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        key = await new_api_key(settings, "tokens:read")
        engine = create_engine(settings)
        verifier = ApiKeyVerifier(create_sessionmaker(engine))
        recorder = _Recorder(monkeypatch)
        body = key[: -len("_") - api_keys.CHECK_LENGTH]
        prefix_part = body[: len("alk_") + 12 + 1]
        secret = body[len(prefix_part) :]

        def checked(candidate: str) -> str:
            return f"{candidate}_{api_keys._check_of(candidate)}"

        candidates = {
            "the key": key,
            "last character wrong": checked(body[:-1] + ("A" if body[-1] != "A" else "B")),
            "first secret character wrong": checked(
                prefix_part + ("A" if secret[0] != "A" else "B") + secret[1:]
            ),
            "whole secret wrong": checked(prefix_part + "A" * len(secret)),
            "unknown prefix": checked("alk_ZZZZZZZZZZZZ_" + secret),
        }
        try:
            await verifier.verify(key)  # warm the cache: no database time in what follows
            await verifier.verify(candidates["unknown prefix"])
            for label, candidate in candidates.items():
                recorder.reset()
                accepted = await verifier.verify(candidate)
                assert (accepted is not None) == (label == "the key"), label
                assert recorder.hashed == [candidate], label
                assert recorder.compared == [(32, 32)], label
        finally:
            await engine.dispose()

    def test_near_misses_have_unrelated_digests(self) -> None:
        key = "alk_AAAAAAAAAAAA_" + "B" * 43
        near = key[:-1] + "C"
        same = sum(
            a == b for a, b in zip(api_keys.hash_api_key(key), api_keys.hash_api_key(near), strict=True)
        )
        assert same < 8  # about 32/256 bytes agree by chance; a shared text prefix buys nothing
