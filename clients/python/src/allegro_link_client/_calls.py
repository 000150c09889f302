"""The sans-I/O core: each operation as a request to send and a function that reads its answer.

`AllegroLink` and `AsyncAllegroLink` differ only in how they send a `Call` and wait between attempts;
what is asked and how the answer is read is written once, here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from allegro_link_client._errors import error_from_response
from allegro_link_client._models import Account, AccountPage, Event, EventPage, Token

T = TypeVar("T")

USER_AGENT = "allegro-link-client/0.1"


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    request: httpx.Request
    read: Callable[[httpx.Response], T]
    # A long poll may legitimately hold the answer back this long, on top of the caller's deadline.
    extra_time: float = 0.0


class Endpoints:
    """allegro-link's service API, one method per operation."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self._base_url = httpx.URL(base_url.rstrip("/") + "/")
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    @property
    def base_url(self) -> str:
        return str(self._base_url)

    def token(self, account_id: uuid.UUID, min_valid_for: int) -> Call[Token]:
        request = self._request("GET", f"accounts/{account_id}/token", {"min_valid_for": min_valid_for})
        return Call(request, _reader(Token.from_json, account_id))

    def refresh(self, account_id: uuid.UUID, min_valid_for: int, rejected_token: str | None) -> Call[Token]:
        # Without a body the service refreshes at once; with the rejected token it refreshes only if
        # that token is still the one it holds, so a late report never throws away a fresh token.
        body = None if rejected_token is None else {"rejected_token": rejected_token}
        request = self._request(
            "POST", f"accounts/{account_id}/token/refresh", {"min_valid_for": min_valid_for}, body
        )
        return Call(request, _reader(Token.from_json, account_id))

    def account(self, account_id: uuid.UUID) -> Call[Account]:
        return Call(self._request("GET", f"accounts/{account_id}"), _reader(Account.from_json, account_id))

    def accounts_page(
        self,
        *,
        cursor: str | None,
        status: str | None,
        login: str | None,
        owner_id: str | None,
        limit: int,
    ) -> Call[AccountPage]:
        params = _present(cursor=cursor, status=status, login=login, owner_id=owner_id, limit=limit)
        return Call(self._request("GET", "accounts", params), _reader(_account_page))

    def events_page(
        self,
        *,
        after: str | None,
        wait: float,
        limit: int,
        types: Sequence[str],
        owner_id: str | None,
        account_id: uuid.UUID | None,
    ) -> Call[EventPage]:
        params = _present(
            after=after, wait=_seconds(wait), limit=limit, owner_id=owner_id, account_id=account_id
        )
        query = [*params.items(), *(("type", kind) for kind in types)]
        return Call(self._request("GET", "events", query), _reader(_event_page), extra_time=wait)

    def _request(
        self, method: str, path: str, params: Any = None, json: dict[str, Any] | None = None
    ) -> httpx.Request:
        return httpx.Request(
            method, self._base_url.join(path), params=params, json=json, headers=self._headers
        )


def _reader(parse: Callable[[Any], T], account_id: uuid.UUID | None = None) -> Callable[[httpx.Response], T]:
    def read(response: httpx.Response) -> T:
        if not response.is_success:
            raise error_from_response(response, account_id)
        return parse(response.json())

    return read


def _account_page(body: dict[str, Any]) -> AccountPage:
    return AccountPage([Account.from_json(item) for item in body["items"]], body.get("next_cursor"))


def _event_page(body: dict[str, Any]) -> EventPage:
    return EventPage([Event.from_json(item) for item in body["items"]], body["next_cursor"])


def _present(**params: object) -> dict[str, str]:
    return {name: str(value) for name, value in params.items() if value is not None}


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
