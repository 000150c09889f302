"""The access log says who called: the client's address (through trusted proxies only) and the
verified caller, so that failed and refused attempts can be attributed."""

from __future__ import annotations

import ipaddress
import json
import uuid
from typing import Any

import httpx
import pytest

from allegro_link.app import create_app
from allegro_link.ops.middleware import ClientAddresses
from allegro_link.settings import Settings
from tests.support.accounts import insert_account
from tests.support.factories import bearer, make_settings, owner_token
from tests.support.keys import new_api_key
from tests.support.live import lifespan
from tests.support.logs import captured_logs

PEER = "10.1.2.3"


async def access_lines(
    settings: Settings, requests: list[tuple[str, dict[str, str]]], peer: str = PEER
) -> list[dict[str, Any]]:
    with captured_logs("INFO") as sink:
        async with lifespan(create_app(settings)) as manager:
            transport = httpx.ASGITransport(app=manager.app, client=(peer, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                for path, headers in requests:
                    await http.get(path, headers=headers)
    return [line for line in map(json.loads, sink.getvalue().splitlines()) if line["event"] == "http.request"]


class TestClientAddress:
    async def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says(
        self, settings: Settings
    ) -> None:
        (line,) = await access_lines(settings, [("/healthz", {"X-Forwarded-For": "198.51.100.7"})])
        assert line["client"] == PEER

    async def test_behind_a_trusted_proxy_the_nearest_untrusted_hop_is_the_client(
        self, database_url: str
    ) -> None:
        settings = make_settings(database_url, trusted_proxies="10.0.0.0/8, 192.0.2.1")
        # The client wrote 6.6.6.6 itself; the proxies appended what they saw.
        spoofed = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 192.0.2.1"}
        (line,) = await access_lines(settings, [("/healthz", spoofed)])
        assert line["client"] == "198.51.100.7"

    async def test_an_untrusted_peer_cannot_claim_another_address(self, database_url: str) -> None:
        settings = make_settings(database_url, trusted_proxies="10.0.0.0/8")
        (line,) = await access_lines(
            settings, [("/healthz", {"X-Forwarded-For": "10.0.0.1"})], peer="203.0.113.5"
        )
        assert line["client"] == "203.0.113.5"


class TestClientAddressesRules:
    trusted = ClientAddresses([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")])

    @staticmethod
    def scope(peer: str, *forwarded: str) -> dict[str, Any]:
        return {"client": (peer, 1), "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded]}

    @pytest.mark.parametrize(
        ("peer", "forwarded", "client"),
        [
            ("10.0.0.2", [], "10.0.0.2"),  # a proxy's own request
            ("10.0.0.2", ["10.0.0.9, 10.0.0.8"], "10.0.0.9"),  # all hops trusted: the leftmost
            ("10.0.0.2", ["198.51.100.1", "203.0.113.2"], "203.0.113.2"),  # repeated headers form one list
            ("10.0.0.2", ["not-an-ip, 10.0.0.7"], "10.0.0.7"),  # a trusted hop wrote garbage: stop there
            ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
            ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ],
    )
    def test_rules(self, peer: str, forwarded: list[str], client: str) -> None:
        assert self.trusted.of(self.scope(peer, *forwarded)) == client

    def test_a_missing_peer_is_none(self) -> None:
        assert self.trusted.of({"client": None, "headers": []}) is None


class TestCaller:
    async def test_each_line_names_the_verified_caller(self, settings: Settings) -> None:
        account = await insert_account(settings, owner_id="owner-a")
        key = await new_api_key(settings, "tokens:read", name="orders-sync")
        lines = await access_lines(
            settings,
            [
                (f"/accounts/{uuid.uuid4()}/token", bearer(key)),  # 404: a service's failed attempt
                (
                    f"/accounts/{account.id}/token",
                    bearer(owner_token("owner-a")),
                ),  # 403: owners read no tokens
                ("/accounts", bearer(owner_token("owner-a"))),
                ("/accounts", bearer("alk_" + "x" * 40)),  # 401: nobody verified
                ("/accounts", {}),
            ],
        )
        assert [(line["status"], line["caller"]) for line in lines] == [
            (404, "service:orders-sync"),
            (403, "owner:owner-a"),
            (200, "owner:owner-a"),
            (401, None),
            (401, None),
        ]
        assert {line["client"] for line in lines} == {PEER}


def test_a_malformed_trusted_proxy_stops_start_up_naming_the_variable(database_url: str) -> None:
    from allegro_link.settings import ConfigError, load_settings

    with pytest.raises(
        ConfigError, match=r"ALLEGRO_LINK_TRUSTED_PROXIES entry 'proxy\.internal' must be an IP"
    ):
        load_settings(
            Settings,
            **{**make_settings(database_url).model_dump(), "trusted_proxies": "10.0.0.1,proxy.internal"},
        )
