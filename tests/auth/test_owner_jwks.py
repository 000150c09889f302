"""Owner JWTs verified with keys from a JWKS URL (RS256 / ES256), including key rollover."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from allegro_link.app import create_app
from allegro_link.settings import Settings
from tests.support.factories import bearer, make_settings
from tests.support.live import lifespan

JWKS_URL = "https://idp.example/.well-known/jwks.json"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
NEW_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if alg == "RS256" else ECAlgorithm
    public: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "alg": alg, "use": "sig"}


def _token(key: Any, kid: str, alg: str, **claims: Any) -> str:
    payload = {"sub": "owner-j", "exp": int(time.time()) + 600, **claims}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def jwks() -> Iterator[dict[str, Any]]:
    document: dict[str, Any] = {"keys": [_jwk(RSA_KEY, "r1", "RS256"), _jwk(EC_KEY, "e1", "ES256")]}
    with respx.mock(assert_all_called=False) as router:
        router.get(JWKS_URL).mock(side_effect=lambda request: httpx.Response(200, json=document))
        yield document


@pytest.fixture
async def jwks_client(database_url: str, jwks: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    settings: Settings = make_settings(database_url, owner_jwt_secret=None, owner_jwt_jwks_url=JWKS_URL)
    async with lifespan(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


class TestJwks:
    @pytest.mark.parametrize(("key", "kid", "alg"), [(RSA_KEY, "r1", "RS256"), (EC_KEY, "e1", "ES256")])
    async def test_signed_tokens_are_accepted(
        self, jwks_client: httpx.AsyncClient, key: Any, kid: str, alg: str
    ) -> None:
        response = await jwks_client.get("/accounts", headers=bearer(_token(key, kid, alg)))
        assert response.status_code == 200

    async def test_hs256_with_the_public_key_is_refused(self, jwks_client: httpx.AsyncClient) -> None:
        forged = jwt.encode(
            {"sub": "owner-j", "exp": int(time.time()) + 600},
            "k" * 32,
            algorithm="HS256",
            headers={"kid": "r1"},
        )
        assert (await jwks_client.get("/accounts", headers=bearer(forged))).status_code == 401

    async def test_unknown_signer_is_refused(self, jwks_client: httpx.AsyncClient) -> None:
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = _token(stranger, "r1", "RS256")
        assert (await jwks_client.get("/accounts", headers=bearer(token))).status_code == 401

    async def test_a_new_key_id_is_fetched_after_rollover(
        self, jwks_client: httpx.AsyncClient, jwks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert (
            await jwks_client.get("/accounts", headers=bearer(_token(RSA_KEY, "r1", "RS256")))
        ).status_code == 200
        jwks["keys"].append(_jwk(NEW_RSA_KEY, "r2", "RS256"))
        # The verifier refetches for an unknown kid at most every 30 s; no waiting in a test.
        import allegro_link.auth.owner as owner_module

        monkeypatch.setattr(owner_module, "JWKS_REFETCH_INTERVAL", 0.0)
        response = await jwks_client.get("/accounts", headers=bearer(_token(NEW_RSA_KEY, "r2", "RS256")))
        assert response.status_code == 200
