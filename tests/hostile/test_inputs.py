"""Hostile input on every route: oversized, malformed, unicode and control characters, non-UUID ids.

Whatever arrives, the answer is a 4xx problem+json (never a 5xx, never a hang), the rejected value is
not echoed back, and the service keeps serving.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote_from_bytes

import httpx
import pytest

from allegro_link.auth.deps import MAX_CREDENTIAL_LENGTH
from allegro_link.ops.middleware import MAX_BODY_BYTES
from allegro_link.settings import Settings
from tests.support.accounts import insert_account
from tests.support.factories import ALLOWED_RETURN, bearer, owner_token
from tests.support.keys import new_api_key

PROBLEM = "application/problem+json"

# Each is refused or handled, never a 5xx. Lone surrogates and invalid UTF-8 reach the service as raw
# bytes (percent-encoded in URLs, \ud800 escapes in JSON), as a hostile client would send them.
HOSTILE_STRINGS = [
    "\ud800",  # lone surrogate: not encodable as UTF-8
    "\x01\x02\x1b[31m",  # control characters, an ANSI escape
    "a\r\nSet-Cookie: x=1",  # header injection attempt
    "\u202eevil\u200b\ufeff",  # bidi override, zero-width space, BOM
    "\U0001f600" * 50,  # astral plane
    "ą" * 3000,  # longer than any field allows
    "%ff%fe%00",  # percent-encoded garbage inside the value
    "\\u0000",  # an escaped NUL, literally
    "' OR 1=1 --",  # SQL, for good measure
    "../../etc/passwd",
]
BAD_IDS = [
    "not-a-uuid",
    "123",
    "00000000-0000-0000-0000-00000000000g",
    f"{uuid.uuid4()}x",
    "ąćę",
    "%F0%9F%98%80",
    "%ED%A0%80",  # a surrogate, UTF-8 encoded: invalid
    "x" * 5000,
]
ACCOUNT_ROUTES = [
    ("GET", "/accounts/{id}", "owner"),
    ("DELETE", "/accounts/{id}", "owner"),
    ("POST", "/accounts/{id}/authorize", "owner"),
    ("GET", "/accounts/{id}/token", "service"),
    ("POST", "/accounts/{id}/token/refresh", "service"),
]
BODY_ROUTES = [
    ("/accounts/authorize", "owner", "return_to"),
    ("/accounts/{id}/authorize", "owner", "return_to"),
    ("/oauth/complete", "owner", "link_session"),
    ("/accounts/{id}/token/refresh", "service", "rejected_token"),
]


@dataclass
class Caller:
    client: httpx.AsyncClient
    account_id: str
    owner: dict[str, str]
    service: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        return self.owner if who == "owner" else self.service

    async def send_json(self, path: str, who: str, raw_json: bytes) -> httpx.Response:
        return await self.client.post(
            path.format(id=self.account_id),
            content=raw_json,
            headers={**self.headers(who), "Content-Type": "application/json"},
        )


@pytest.fixture
async def caller(client: httpx.AsyncClient, settings: Settings) -> Caller:
    account = await insert_account(settings, owner_id="owner-a")
    key = await new_api_key(settings, "tokens:read", "accounts:read")
    return Caller(client, str(account.id), bearer(owner_token("owner-a")), bearer(key))


def _assert_refused(response: httpx.Response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == response.status_code and body["code"]


def _url_escaped(value: str) -> str:
    return quote_from_bytes(value.encode("utf-8", "surrogatepass"))


class TestOversized:
    @pytest.mark.parametrize(("path", "who", "field"), BODY_ROUTES)
    async def test_a_body_over_the_limit_is_413(
        self, caller: Caller, path: str, who: str, field: str
    ) -> None:
        body = json.dumps({field: "x" * (MAX_BODY_BYTES + 1)}).encode()
        _assert_refused(await caller.send_json(path, who, body), 413)

    async def test_a_chunked_body_over_the_limit_is_refused(self, caller: Caller) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"return_to": "'
            for _ in range(20):
                yield b"x" * 8192
            yield b'"}'

        response = await caller.client.post(
            "/accounts/authorize",
            content=chunks(),
            headers={**caller.owner, "Content-Type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        # The guard stops reading at the limit; FastAPI reports the aborted body as 400, not 413.
        _assert_refused(response, 400, 413)

    async def test_a_huge_content_length_is_refused_before_reading(self, caller: Caller) -> None:
        response = await caller.client.post(
            "/oauth/complete", content=b"{}", headers={**caller.owner, "Content-Length": str(10**12)}
        )
        _assert_refused(response, 413)

    async def test_an_oversized_credential_is_401(self, caller: Caller) -> None:
        too_long = "a" * (MAX_CREDENTIAL_LENGTH + 1)
        _assert_refused(await caller.client.get("/accounts", headers=bearer(too_long)), 401)
        # Far over the header budget: refused before authentication is even attempted.
        huge = "alk_" + "A" * 100_000
        _assert_refused(await caller.client.get("/accounts", headers=bearer(huge)), 431)

    async def test_a_body_that_is_not_json_is_a_problem(self, caller: Caller) -> None:
        for raw in (b"\xff\xfe\x00garbage", b'{"return_to": ', b"[" * 10_000, b'{"return_to": "\xc3\x28"}'):
            response = await caller.send_json("/accounts/authorize", "owner", raw)
            _assert_refused(response, 400, 422)

    async def test_deeply_nested_json_is_a_problem(self, caller: Caller) -> None:
        nested = b'{"return_to": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"
        _assert_refused(await caller.send_json("/accounts/authorize", "owner", nested), 400, 422)

    async def test_oversized_headers_are_refused(self, caller: Caller) -> None:
        response = await caller.client.get("/healthz", headers={"X-Padding": "a" * 1_000_000})
        assert response.status_code == 431
        assert response.headers["content-type"] == "application/problem+json"


class TestIds:
    @pytest.mark.parametrize(("method", "path", "who"), ACCOUNT_ROUTES)
    async def test_non_uuid_ids_are_422_and_not_echoed(
        self, caller: Caller, method: str, path: str, who: str
    ) -> None:
        body = {"return_to": ALLOWED_RETURN} if path.endswith("authorize") else None
        for bad_id in BAD_IDS:
            response = await caller.client.request(
                method, path.format(id=bad_id), headers=caller.headers(who), json=body
            )
            _assert_refused(response, 422)
            assert bad_id not in response.text, bad_id

    @pytest.mark.parametrize(("method", "path", "who"), ACCOUNT_ROUTES)
    async def test_a_nul_byte_in_the_id_is_400(
        self, caller: Caller, method: str, path: str, who: str
    ) -> None:
        response = await caller.client.request(
            method, path.format(id=caller.account_id + "%00"), headers=caller.headers(who)
        )
        _assert_refused(response, 400)

    async def test_uuid_spellings_name_the_same_account(self, caller: Caller) -> None:
        plain = uuid.UUID(caller.account_id)
        for spelling in (str(plain).upper(), plain.hex, "{" + str(plain) + "}", plain.urn):
            response = await caller.client.get(f"/accounts/{spelling}", headers=caller.owner)
            assert response.status_code in (200, 422), (spelling, response.status_code)
            if response.status_code == 200:
                assert response.json()["id"] == caller.account_id


class TestStrings:
    @pytest.mark.parametrize(("path", "who", "field"), BODY_ROUTES)
    async def test_hostile_body_strings_are_refused_or_harmless(
        self, caller: Caller, path: str, who: str, field: str
    ) -> None:
        for value in HOSTILE_STRINGS:
            response = await caller.send_json(path, who, json.dumps({field: value}).encode())
            if field == "rejected_token" and response.status_code == 200:
                # Not the stored token, so the stored one (still valid) is the answer: no refresh.
                assert response.json()["account_id"] == caller.account_id
            else:
                _assert_refused(response, 404, 422)
                assert value not in response.text or len(value) < 4, value

    @pytest.mark.parametrize("parameter", ["login", "owner_id", "cursor", "status", "limit"])
    async def test_hostile_query_parameters_of_the_list(self, caller: Caller, parameter: str) -> None:
        for value in HOSTILE_STRINGS:
            response = await caller.client.get(
                f"/accounts?{parameter}={_url_escaped(value)}", headers=caller.service
            )
            if response.status_code == 200:
                assert parameter in ("login", "owner_id"), value  # free-text filters that match nothing
                assert response.json()["items"] == []
            else:
                _assert_refused(response, 400, 422)
                assert value not in response.text or len(value) < 4, value

    async def test_hostile_min_valid_for(self, caller: Caller) -> None:
        for value in HOSTILE_STRINGS:
            response = await caller.client.get(
                f"/accounts/{caller.account_id}/token?min_valid_for={_url_escaped(value)}",
                headers=caller.service,
            )
            _assert_refused(response, 422)

    async def test_hostile_callback_parameters_are_400_without_echo(self, caller: Caller) -> None:
        for value in HOSTILE_STRINGS:
            escaped = _url_escaped(value)
            for query in (f"state={escaped}&code=c", f"state={escaped}&error={escaped}", f"code={escaped}"):
                response = await caller.client.get(f"/oauth/callback?{query}")
                _assert_refused(response, 400)
                assert "location" not in response.headers
                assert value not in response.text or len(value) < 4, value

    async def test_hostile_authorization_headers_are_401(self, caller: Caller) -> None:
        for value in HOSTILE_STRINGS:
            raw = value.encode("utf-8", "surrogatepass")
            for header in (b"Bearer " + raw, b"Bearer alk_" + raw, raw, b"Basic " + raw):
                response = await caller.client.get("/accounts", headers=[(b"Authorization", header)])
                _assert_refused(response, 401)

    async def test_unprintable_owner_ids_in_a_valid_jwt_are_401(self, caller: Caller) -> None:
        for sub in [v for v in HOSTILE_STRINGS if not v.isprintable()] + [" padded ", "x" * 201]:
            token = owner_token(sub)  # JSON-escaped in the payload, lone surrogates too
            _assert_refused(await caller.client.get("/accounts", headers=bearer(token)), 401)

    async def test_the_service_still_serves_afterwards(self, caller: Caller) -> None:
        for value in HOSTILE_STRINGS:
            await caller.send_json("/accounts/authorize", "owner", json.dumps({"return_to": value}).encode())
        response = await caller.client.get(f"/accounts/{caller.account_id}/token", headers=caller.service)
        assert response.status_code == 200


class TestRequestShape:
    async def test_unknown_fields_are_refused(self, caller: Caller) -> None:
        response = await caller.send_json(
            "/accounts/authorize", "owner", json.dumps({"return_to": ALLOWED_RETURN, "extra": 1}).encode()
        )
        _assert_refused(response, 422)

    @pytest.mark.parametrize(
        "body", [b"null", b"[]", b'"x"', b"1", b'{"return_to": null}', b'{"return_to": 1}']
    )
    async def test_wrong_json_types_are_422(self, caller: Caller, body: bytes) -> None:
        _assert_refused(await caller.send_json("/accounts/authorize", "owner", body), 422)

    async def test_a_form_body_where_json_is_expected_is_refused(self, caller: Caller) -> None:
        response = await caller.client.post(
            "/accounts/authorize", data={"return_to": ALLOWED_RETURN}, headers=caller.owner
        )
        _assert_refused(response, 422)

    @pytest.mark.parametrize("method", ["PUT", "PATCH", "TRACE"])
    async def test_unsupported_methods_are_405(self, caller: Caller, method: str) -> None:
        response = await caller.client.request(method, f"/accounts/{caller.account_id}", headers=caller.owner)
        _assert_refused(response, 405)

    async def test_duplicate_query_parameters_take_one_value_without_error(self, caller: Caller) -> None:
        response = await caller.client.get(
            f"/accounts/{caller.account_id}/token?min_valid_for=10&min_valid_for=99999",
            headers=caller.service,
        )
        assert response.status_code in (200, 422)

    async def test_many_query_parameters(self, caller: Caller) -> None:
        query = "&".join(f"p{i}={i}" for i in range(2000))
        response = await caller.client.get(f"/accounts?{query}", headers=caller.owner)
        assert response.status_code == 200
