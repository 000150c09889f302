"""`httpx.Auth` for calls to Allegro: attach a valid token; on a 401 report it, and retry once.

The flow never talks to Allegro's token endpoint and never sees a refresh token: a rejected token is
reported to allegro-link, which refreshes (once, for everyone) and answers with the new one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Generator
from typing import Protocol

import httpx

from allegro_link_client._errors import RequestNotReplayable
from allegro_link_client._models import Token


class TokenSource(Protocol):
    def current(self, account_id: uuid.UUID, min_valid_for: int) -> Token: ...

    def after_rejection(self, account_id: uuid.UUID, rejected: Token, min_valid_for: int) -> Token: ...


class AsyncTokenSource(Protocol):
    async def current(self, account_id: uuid.UUID, min_valid_for: int) -> Token: ...

    async def after_rejection(self, account_id: uuid.UUID, rejected: Token, min_valid_for: int) -> Token: ...


class InThread:
    """A blocking token source for an `httpx.AsyncClient`: the calls to allegro-link run in a worker
    thread, so a sync `AllegroLink` can serve async code without blocking its event loop."""

    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def current(self, account_id: uuid.UUID, min_valid_for: int) -> Token:
        return await asyncio.to_thread(self._source.current, account_id, min_valid_for)

    async def after_rejection(self, account_id: uuid.UUID, rejected: Token, min_valid_for: int) -> Token:
        return await asyncio.to_thread(self._source.after_rejection, account_id, rejected, min_valid_for)


class AllegroAuth(httpx.Auth):
    """Authenticates requests to Allegro as one account; see `AllegroLink.auth`."""

    def __init__(
        self,
        account_id: uuid.UUID,
        min_valid_for: int,
        *,
        source: TokenSource | None,
        async_source: AsyncTokenSource,
    ) -> None:
        self.account_id = account_id
        self.min_valid_for = min_valid_for
        self._source = source
        self._async_source = async_source

    def __repr__(self) -> str:
        return f"AllegroAuth(account_id={self.account_id!s})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._source is None:
            raise TypeError(
                "this auth comes from AsyncAllegroLink and works with httpx.AsyncClient; "
                "use AllegroLink(...).auth() with httpx.Client"
            )
        token = self._source.current(self.account_id, self.min_valid_for)
        response = yield _authorized(request, token)
        if response.status_code != httpx.codes.UNAUTHORIZED:
            return
        fresh = self._source.after_rejection(self.account_id, token, self.min_valid_for)
        _ensure_replayable(request)
        # A second 401 ends the flow: the caller gets that response as it is.
        yield _authorized(request, fresh)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._async_source.current(self.account_id, self.min_valid_for)
        response = yield _authorized(request, token)
        if response.status_code != httpx.codes.UNAUTHORIZED:
            return
        fresh = await self._async_source.after_rejection(self.account_id, token, self.min_valid_for)
        _ensure_replayable(request)
        yield _authorized(request, fresh)


def _authorized(request: httpx.Request, token: Token) -> httpx.Request:
    request.headers["Authorization"] = token.authorization
    return request


def _ensure_replayable(request: httpx.Request) -> None:
    # Bytes (and bodies already read) are a ByteStream; a generator or file stream has been consumed by
    # the first send, and sending it again would send an empty or partial body under a valid token.
    # The rejected token has been reported by now, so the caller's own retry gets the fresh one.
    if not isinstance(request.stream, httpx.ByteStream):
        raise RequestNotReplayable()
