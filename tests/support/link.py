"""Driving the link flow as a browser and a frontend would, against the fake Allegro."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from allegro_link.devtools.consent import consent, query_params
from allegro_link.settings import Settings
from tests.support.factories import bearer, owner_token

RETURN_TO = "https://panel.example.com/allegro/konta"


@dataclass
class LinkHarness:
    """Drives the flow as a browser and a frontend would."""

    service: httpx.AsyncClient
    fake: httpx.AsyncClient
    settings: Settings

    async def start(self, owner: str, *, account_id: str | None = None, return_to: str = RETURN_TO) -> str:
        path = f"/accounts/{account_id}/authorize" if account_id else "/accounts/authorize"
        response = await self.service.post(
            path, json={"return_to": return_to}, headers=bearer(owner_token(owner))
        )
        assert response.status_code == 201, response.text
        url: str = response.json()["authorization_url"]
        return url

    async def consent(self, authorization_url: str, login: str) -> str:
        """Log in at the fake Allegro as `login` and consent; returns the callback URL it redirects to."""
        return await consent(self.fake, authorization_url, login)

    async def callback(self, callback_url: str) -> httpx.Response:
        parts = urlsplit(callback_url)
        return await self.service.get(f"/oauth/callback?{parts.query}")

    async def complete(self, owner: str, link_session: str) -> httpx.Response:
        return await self.service.post(
            "/oauth/complete", json={"link_session": link_session}, headers=bearer(owner_token(owner))
        )

    async def link(self, owner: str, login: str, *, account_id: str | None = None) -> httpx.Response:
        """The whole journey; returns the /oauth/complete response."""
        callback = await self.callback(
            await self.consent(await self.start(owner, account_id=account_id), login)
        )
        assert callback.status_code == 303, callback.text
        params = returned_params(callback)
        assert params.get("allegro_link") == "complete", params
        return await self.complete(owner, params["link_session"])

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = (await self.fake.get("/__fake__/stats")).json()
        return stats


def returned_params(response: httpx.Response) -> dict[str, str]:
    location = response.headers["location"]
    assert location.startswith(RETURN_TO), location
    return query_params(location)
