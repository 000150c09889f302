"""Every HTTP call to Allegro, and nothing else.

authlib builds the OAuth requests (authorization URL, form bodies, Basic client auth); the shared httpx
client sends them. Nothing outside this package sees authlib or httpx types: callers get a `TokenSet`,
an `AllegroUser`, or one of two errors that say what to do next:

- `AllegroUnavailable`: not the account's fault (network, timeout, 5xx, 429, malformed answer).
  Retry later; never flag the account.
- `AllegroRejected`: Allegro refused this request (`invalid_grant`, 401, other 4xx). For a refresh, that
  is the account's (or, if every account gets it, the client secret's) problem.

Retries are bounded (`RETRY_BACKOFF_SECONDS`, full jitter, within `RETRY_BUDGET_SECONDS`) and only made
when they are safe. An exchange or a refresh that may have reached Allegro is never re-sent: it has
consumed its code or rotated its refresh token, and a blind retry would turn a recoverable hiccup into a
lost grant (and a second refresh kills the access token the first one issued). So token requests are
retried only when they provably never left this process: the connection could not be opened
(`ConnectError`, `ConnectTimeout`) or no pooled connection became free (`PoolTimeout`). `GET /me` is a
read, so it is also retried after timeouts, dropped connections and 5xx. A 429 is never retried here:
Allegro asks us to wait, and the token broker's breaker does.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import structlog
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request

ALLEGRO_MEDIA_TYPE = "application/vnd.allegro.public.v1+json"
MAX_RETRY_AFTER_SECONDS = 300.0
# Upper bounds of the (fully jittered) pauses before the 2nd and 3rd attempt.
RETRY_BACKOFF_SECONDS = (0.2, 0.6)
# No new attempt starts this long after the first one did (the callback has a browser waiting).
RETRY_BUDGET_SECONDS = 4.0
# Failures that prove the request never reached Allegro: safe to retry even for a token request.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TokenSet:
    """A token pair as Allegro issued it. `repr` hides the tokens."""

    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    scope: str | None
    allegro_user_id: str | None

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_expires_at={self.access_expires_at.isoformat()}, "
            f"refresh_expires_at={self.refresh_expires_at}, user={self.allegro_user_id})"
        )


@dataclass(frozen=True, slots=True)
class AllegroUser:
    id: str
    login: str


class AllegroError(Exception):
    """Base for failed calls to Allegro. Messages never contain tokens or codes."""

    def __init__(self, message: str, *, operation: str, status: int | None = None) -> None:
        super().__init__(message)
        self.operation = operation
        self.status = status


class AllegroUnavailable(AllegroError):
    """Transient: network, timeout, 5xx, 429 or a malformed answer."""

    def __init__(
        self, message: str, *, operation: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, operation=operation, status=status)
        self.retry_after = retry_after


class AllegroRejected(AllegroError):
    """Allegro refused the request (4xx other than 429). `error` is its OAuth error word."""

    def __init__(self, message: str, *, operation: str, status: int, error: str | None) -> None:
        super().__init__(message, operation=operation, status=status)
        self.error = error

    @property
    def is_invalid_grant(self) -> bool:
        return self.error == "invalid_grant"

    @property
    def is_unauthorized(self) -> bool:
        return self.status == 401

    @property
    def refuses_account(self) -> bool:
        """Allegro refuses this account's grant: a 401, or a 403 from an API call (`/me`).

        Unless our own client credentials are what is broken: callers check that before acting on it.
        """
        return self.status == 401 or (self.status == 403 and self.operation == "me")


class AllegroClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        auth_base_url: str,
        api_base_url: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        retry_backoff: Sequence[float] = RETRY_BACKOFF_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        self._retry_backoff = tuple(retry_backoff)
        self._sleep = sleep
        self._jitter = random.SystemRandom()
        self._auth_base_url = auth_base_url.rstrip("/")
        self._api_base_url = api_base_url.rstrip("/")
        self._client_auth = ClientAuth(client_id, client_secret, "client_secret_basic")
        self.client_id = client_id
        self.redirect_uri = redirect_uri

    @property
    def token_url(self) -> str:
        return f"{self._auth_base_url}/auth/oauth/token"

    def authorization_url(self, *, state: str, code_challenge: str) -> str:
        # prompt=confirm always: with several accounts in one browser, Allegro would otherwise reuse
        # the logged-in session silently and link the same account twice (docs/allegro.md).
        url: str = prepare_grant_uri(
            f"{self._auth_base_url}/auth/oauth/authorize",
            client_id=self.client_id,
            response_type="code",
            redirect_uri=self.redirect_uri,
            state=state,
            code_challenge=code_challenge,
            code_challenge_method="S256",
            prompt="confirm",
        )
        return url

    async def exchange_code(self, code: str, code_verifier: str) -> TokenSet:
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=self.redirect_uri, code_verifier=code_verifier
        )
        return await self._token_request("exchange", body)

    async def refresh(self, refresh_token: str) -> TokenSet:
        body = prepare_token_request("refresh_token", refresh_token=refresh_token)
        return await self._token_request("refresh", body)

    async def client_credentials_valid(self) -> bool:
        """Whether Allegro accepts our client id and secret.

        Allegro answers 401 both for a revoked grant and for a broken client secret. Exchanging a
        made-up code tells them apart without touching any account: client authentication comes
        first, so good credentials get 400 `invalid_grant`, bad ones 401.
        """
        body = prepare_token_request(
            "authorization_code", code=secrets.token_urlsafe(24), redirect_uri=self.redirect_uri
        )
        try:
            await self._token_request("credentials_check", body)
        except AllegroRejected as exc:
            return not exc.is_unauthorized
        return True

    async def me(self, access_token: str) -> AllegroUser:
        operation = "me"
        response = await self._send(
            operation,
            "GET",
            f"{self._api_base_url}/me",
            idempotent=True,
            headers={"Authorization": f"Bearer {access_token}", "Accept": ALLEGRO_MEDIA_TYPE},
        )
        payload = _json_object(response, operation)
        user_id, login = payload.get("id"), payload.get("login")
        if not isinstance(user_id, str | int) or not isinstance(login, str) or not login or not str(user_id):
            raise AllegroUnavailable("malformed /me answer", operation=operation, status=response.status_code)
        return AllegroUser(id=str(user_id), login=login)

    async def _token_request(self, operation: str, body: str) -> TokenSet:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        # Parameters go in the form body only (Allegro dropped query parameters on the token endpoint).
        url, headers, body = self._client_auth.prepare("POST", self.token_url, headers, body)
        response = await self._send(operation, "POST", url, headers=headers, content=body)
        return _token_set(_json_object(response, operation), operation, response.status_code)

    async def _send(
        self, operation: str, method: str, url: str, *, idempotent: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One call, retried when that is safe (module docstring); raises the last attempt's error."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return await self._attempt(operation, method, url, **kwargs)
            except _Retryable as failure:
                if not (failure.not_sent or idempotent) or attempt >= len(self._retry_backoff):
                    raise failure.error from None
                pause = self._jitter.uniform(0, self._retry_backoff[attempt])
                if time.monotonic() - started + pause > RETRY_BUDGET_SECONDS:
                    raise failure.error from None
                attempt += 1
                log.info(
                    "allegro.retry",
                    operation=operation,
                    attempt=attempt + 1,
                    reason=failure.reason,
                    pause_ms=round(pause * 1000),
                )
                await self._sleep(pause)

    async def _attempt(self, operation: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            message = (
                "Allegro timed out" if isinstance(exc, httpx.TimeoutException) else "cannot reach Allegro"
            )
            unavailable = AllegroUnavailable(f"{message} ({reason})", operation=operation)
            raise _Retryable(unavailable, reason, not_sent=isinstance(exc, _NOT_SENT)) from None
        status = response.status_code
        if status == 429 or status >= 500:
            unavailable = AllegroUnavailable(
                f"Allegro answered {status}",
                operation=operation,
                status=status,
                retry_after=_retry_after(response),
            )
            if status == 429:
                raise unavailable  # Allegro asks us to wait: the broker's breaker does, not a retry
            raise _Retryable(unavailable, str(status))
        if status >= 400:
            error = _oauth_error(response)
            raise AllegroRejected(
                f"Allegro refused the request ({status} {error or 'no error code'})",
                operation=operation,
                status=status,
                error=error,
            )
        return response


class _Retryable(Exception):
    """A failed attempt that may be retried: always when `not_sent`, else only an idempotent call."""

    def __init__(self, error: AllegroUnavailable, reason: str, *, not_sent: bool = False) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.not_sent = not_sent


def _json_object(response: httpx.Response, operation: str) -> dict[str, Any]:
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        raise AllegroUnavailable(
            "Allegro answered with a malformed body", operation=operation, status=response.status_code
        )
    return payload


def _token_set(payload: dict[str, Any], operation: str, status: int) -> TokenSet:
    access, refresh = payload.get("access_token"), payload.get("refresh_token")
    expires_in = payload.get("expires_in")
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise AllegroUnavailable("token answer without tokens", operation=operation, status=status)
    try:
        lifetime = float(expires_in) if expires_in is not None else None
    except (TypeError, ValueError):
        lifetime = None
    access_claims = _unverified_claims(access)
    refresh_claims = _unverified_claims(refresh)
    now = datetime.now(UTC)
    if lifetime is not None and lifetime > 0:
        access_expires_at = now + timedelta(seconds=lifetime)
    elif isinstance(access_claims.get("exp"), int | float):
        access_expires_at = datetime.fromtimestamp(access_claims["exp"], UTC)
    else:
        raise AllegroUnavailable("token answer without a lifetime", operation=operation, status=status)
    refresh_exp = refresh_claims.get("exp")
    refresh_expires_at = (
        datetime.fromtimestamp(refresh_exp, UTC) if isinstance(refresh_exp, int | float) else None
    )
    # Allegro identifies the user by the JWT's user_name claim (its user id); /me confirms it.
    user = access_claims.get("user_name") or refresh_claims.get("user_name")
    scope = payload.get("scope")
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        access_expires_at=access_expires_at,
        refresh_expires_at=refresh_expires_at,
        scope=scope if isinstance(scope, str) else None,
        allegro_user_id=str(user) if isinstance(user, str | int) else None,
    )


def _unverified_claims(token: str) -> dict[str, Any]:
    # Allegro publishes no signing keys; clients decode without verifying (docs/allegro.md).
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    return error[:64] if isinstance(error, str) else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
