"""`AllegroLink`: the blocking client. Safe to share between threads."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

import httpx

from allegro_link_client._auth import AllegroAuth, InThread
from allegro_link_client._cache import TokenCache
from allegro_link_client._calls import Call, Endpoints
from allegro_link_client._errors import AccountNotFound, ReloginRequired, still_fetching
from allegro_link_client._feed import FeedQuery, FeedState
from allegro_link_client._models import Account, AccountId, Event, Token, as_uuid
from allegro_link_client._retry import RetryPolicy, is_retryable

T = TypeVar("T")


class AllegroLink:
    """Valid Allegro tokens from allegro-link at `base_url`, with the API key of this service.

    `deadline` bounds each operation, retries included (seconds). Tokens are held in memory only.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        deadline: float = 10.0,
        max_attempts: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._endpoints = Endpoints(base_url, api_key)
        self._retry = RetryPolicy(deadline=deadline, max_attempts=max_attempts)
        self._http = httpx.Client(transport=transport)
        self._tokens = TokenCache()
        self._locks: dict[uuid.UUID, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"AllegroLink({self._endpoints.base_url!r})"

    def __enter__(self) -> AllegroLink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- tokens --------------------------------------------------------------------------------------

    def token(self, account_id: AccountId, *, min_valid_for: int = 300) -> Token:
        """A token valid for at least `min_valid_for` seconds (if allegro-link can have one: see README)."""
        account = as_uuid(account_id)
        held = self._tokens.usable(account, min_valid_for)
        if held is not None:
            return held
        # One fetch per account at a time: threads that wait here find the token it brought.
        ends_at = self._retry.ends_at()
        with self._locked(account, ends_at):
            held = self._tokens.usable(account, min_valid_for)
            if held is not None:
                return held
            return self._keep(account, self._endpoints.token(account, min_valid_for), ends_at)

    def refresh(
        self, account_id: AccountId, *, rejected_token: str | Token | None = None, min_valid_for: int = 300
    ) -> Token:
        """Report a token Allegro refused (401) and get its successor; without one, refresh now."""
        account = as_uuid(account_id)
        rejected = rejected_token.access_token if isinstance(rejected_token, Token) else rejected_token
        ends_at = self._retry.ends_at()
        with self._locked(account, ends_at):
            if rejected is not None:
                held = self._tokens.replacement(account, rejected, min_valid_for)
                if held is not None:
                    return held
            return self._keep(account, self._endpoints.refresh(account, min_valid_for, rejected), ends_at)

    def auth(self, account_id: AccountId, *, min_valid_for: int = 300) -> AllegroAuth:
        """An `httpx.Auth` for calls to Allegro as this account (works with `httpx.Client` and
        `httpx.AsyncClient`; with the latter the calls to allegro-link run in a worker thread)."""
        source = _AuthSource(self)
        return AllegroAuth(as_uuid(account_id), min_valid_for, source=source, async_source=InThread(source))

    # -- accounts and events ---------------------------------------------------------------------------

    def account(self, account_id: AccountId) -> Account:
        return self._send(self._endpoints.account(as_uuid(account_id)))

    def accounts(
        self,
        *,
        status: str | None = None,
        login: str | None = None,
        owner_id: str | None = None,
        page_size: int = 50,
    ) -> Iterator[Account]:
        """Every account matching the filters, page after page (needs the `accounts:read` scope)."""
        cursor: str | None = None
        while True:
            page = self._send(
                self._endpoints.accounts_page(
                    cursor=cursor, status=status, login=login, owner_id=owner_id, limit=page_size
                )
            )
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def events(
        self,
        after: str | None = None,
        *,
        wait: float = 30,
        limit: int = 100,
        types: Sequence[str] = (),
        owner_id: str | None = None,
        account_id: AccountId | None = None,
        stop_when_idle: bool = False,
    ) -> EventFeed:
        """The event feed from `after` on, following `next_cursor`; see `EventFeed.cursor` to resume."""
        query = FeedQuery(
            wait,
            limit,
            tuple(types),
            owner_id,
            None if account_id is None else as_uuid(account_id),
            stop_when_idle,
        )
        return EventFeed(self, FeedState(self._endpoints, after, query))

    # -- plumbing -------------------------------------------------------------------------------------

    def _keep(self, account: uuid.UUID, call: Call[Token], ends_at: float) -> Token:
        try:
            return self._tokens.keep(self._send(call, ends_at))
        except (ReloginRequired, AccountNotFound):
            self._tokens.forget(account)
            raise

    @contextmanager
    def _locked(self, account: uuid.UUID, ends_at: float) -> Iterator[None]:
        # Waiting for another thread's fetch counts against this caller's deadline too.
        with self._locks_guard:
            lock = self._locks.setdefault(account, threading.Lock())
        if not lock.acquire(timeout=max(ends_at - time.monotonic(), 0)):
            raise still_fetching()
        try:
            yield
        finally:
            lock.release()

    def _send(self, call: Call[T], ends_at: float | None = None) -> T:
        attempts = self._retry.start(call.extra_time, ends_at=ends_at)
        while True:
            call.request.extensions["timeout"] = attempts.start_attempt()
            try:
                response = self._http.send(call.request)
            except httpx.TransportError as exc:
                time.sleep(attempts.wait_before_next(exc))
                continue
            if is_retryable(response):
                time.sleep(attempts.wait_before_next(response))
                continue
            return call.read(response)


class EventFeed(Iterator[Event]):
    """Events oldest first, forever (or until a page is empty, with `stop_when_idle`).

    `cursor` is where to resume from once the last event handed out has been handled.
    """

    def __init__(self, link: AllegroLink, state: FeedState) -> None:
        self._link = link
        self._state = state

    @property
    def cursor(self) -> str | None:
        return self._state.cursor

    def __next__(self) -> Event:
        while not self._state.has_event():
            if self._state.finished():
                raise StopIteration
            self._state.accept(self._link._send(self._state.next_page()))
        return self._state.take()


class _AuthSource:
    """What `AllegroAuth` needs from the link, without making those methods public."""

    def __init__(self, link: AllegroLink) -> None:
        self._link = link

    def current(self, account_id: uuid.UUID, min_valid_for: int) -> Token:
        return self._link.token(account_id, min_valid_for=min_valid_for)

    def after_rejection(self, account_id: uuid.UUID, rejected: Token, min_valid_for: int) -> Token:
        return self._link.refresh(account_id, rejected_token=rejected, min_valid_for=min_valid_for)
