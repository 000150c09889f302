"""Typed errors, built from allegro-link's problem+json bodies (RFC 9457).

Messages are made of the problem's code, title and detail only (the service never puts a token in
those), never of a request: no exception here can carry an access token or the API key.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx


class AllegroLinkError(Exception):
    """allegro-link answered an error, or could not be reached. `code` is the problem's stable word."""

    def __init__(self, message: str, *, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r})"


class AccountNotFound(AllegroLinkError):
    """No such account (or it was deleted): allegro-link answered 404."""


class ReloginRequired(AllegroLinkError):
    """The account's owner must log in to Allegro again; no token can be had until then."""

    def __init__(self, message: str, *, account_id: uuid.UUID | None, reason: str | None) -> None:
        super().__init__(message, code="relogin_required", status=409)
        self.account_id = account_id
        self.reason = reason

    def __repr__(self) -> str:
        return f"ReloginRequired(account_id={self.account_id!r}, reason={self.reason!r})"


class AllegroLinkUnavailable(AllegroLinkError):
    """No answer within the deadline: allegro-link unreachable, or Allegro (or the service) answering 503.

    `retry_after` is the last `Retry-After` in seconds, or None when there was none (connection errors).
    """

    def __init__(self, message: str, *, code: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"AllegroLinkUnavailable(code={self.code!r}, status={self.status!r}, "
            f"retry_after={self.retry_after!r})"
        )


class RequestNotReplayable(AllegroLinkError):
    """Allegro refused the token of a request whose streamed body cannot be sent a second time.

    The token has been reported and replaced: send the request again with a fresh body.
    """

    def __init__(self) -> None:
        super().__init__(
            "Allegro answered 401 to a request with a streamed body, which cannot be sent again; "
            "the token was refreshed, so build the request again (or pass `content=bytes`) and resend it",
            code="request_not_replayable",
            status=401,
        )


def error_from_response(response: httpx.Response, account_id: uuid.UUID | None = None) -> AllegroLinkError:
    """The typed error for a non-2xx answer of allegro-link; `account_id` when the call was about one."""
    problem = _problem(response)
    code = str(problem.get("code") or f"http_{response.status_code}")
    message = _message(problem, response)
    if code == "relogin_required":
        reason = problem.get("relogin_reason")
        return ReloginRequired(message, account_id=account_id, reason=str(reason) if reason else None)
    if response.status_code == 404 and account_id is not None:
        return AccountNotFound(message, code=code, status=404)
    if response.status_code == 503:
        return AllegroLinkUnavailable(
            message, code=code, status=503, retry_after=retry_after_seconds(response)
        )
    return AllegroLinkError(message, code=code, status=response.status_code)


def unreachable(exc: httpx.TransportError) -> AllegroLinkUnavailable:
    # The class name says what happened (ConnectError, ReadTimeout, …); httpx's message may quote the URL.
    return AllegroLinkUnavailable(
        f"allegro-link could not be reached within the deadline ({type(exc).__name__})",
        code="unreachable",
        status=None,
        retry_after=None,
    )


def still_fetching() -> AllegroLinkUnavailable:
    return AllegroLinkUnavailable(
        "another request for this account's token did not finish within the deadline",
        code="deadline_exceeded",
        status=None,
        retry_after=None,
    )


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` as seconds; allegro-link sends whole seconds (an HTTP date is not used by it)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _problem(response: httpx.Response) -> dict[str, Any]:
    # A proxy in front of the service may answer HTML; then there is no problem body to read.
    if "json" not in response.headers.get("content-type", ""):
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(problem: dict[str, Any], response: httpx.Response) -> str:
    title = problem.get("title") or response.reason_phrase or "Error"
    detail = problem.get("detail")
    text = f"{title}: {detail}" if detail and detail != title else str(title)
    return f"{text} (HTTP {response.status_code})"
