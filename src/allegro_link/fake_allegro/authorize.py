"""Validation of an authorize request, shared by the HTML pages and the `/__fake__/authorize` shortcut.

Order follows an OAuth server that must not redirect to an unverified place: first the client and its
exact redirect URI (failure: an error page, never a redirect), then everything else (failure: a
redirect back to the client with `error=`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from allegro_link.fake_allegro.config import ALL_SCOPES, FakeClient
from allegro_link.fake_allegro.params import AUTHORIZE_PARAMS
from allegro_link.fake_allegro.pkce import is_valid_challenge

# Relative, so that a browser on the fake stays on the fake; Allegro sends it to its own host (§2).
INVALID_SCOPE_PATH = "/auth/oauth/"

Pairs = Sequence[tuple[str, str]]


class AuthorizeErrorPage(Exception):
    """The redirect target cannot be trusted: show an error page and stop."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AuthorizeErrorRedirect(Exception):
    """A request error that is reported to the client through its redirect URI."""

    def __init__(self, location: str) -> None:
        super().__init__("authorize error redirect")
        self.location = location


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    client: FakeClient
    redirect_uri: str
    state: str | None
    scopes: tuple[str, ...]
    prompt: str | None
    code_challenge: str | None
    extra: tuple[tuple[str, str], ...]
    # The request exactly as received, carried through the login and consent forms.
    query: str

    @property
    def confirm_account(self) -> bool:
        return self.prompt == "confirm"

    def success_location(self, code: str) -> str:
        return with_query(self.redirect_uri, [("code", code), *self._state_and_extra()])

    def error_location(self, error: str, description: str) -> str:
        pairs = [("error", error), ("error_description", description), *self._state_and_extra()]
        return with_query(self.redirect_uri, pairs)

    def _state_and_extra(self) -> list[tuple[str, str]]:
        state = [("state", self.state)] if self.state is not None else []
        return [*state, *self.extra]


def parse_authorize(pairs: Pairs, find_client: Callable[[str], FakeClient | None]) -> AuthorizeRequest:
    """An `AuthorizeRequest`, or raise `AuthorizeErrorPage` / `AuthorizeErrorRedirect`."""
    params: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    for name, value in pairs:
        if name in AUTHORIZE_PARAMS:
            params.setdefault(name, value)
        else:
            extra.append((name, value))

    client_id = params.get("client_id", "")
    client = find_client(client_id) if client_id else None
    if client is None:
        raise AuthorizeErrorPage(f"No client with requested id: {client_id}")
    redirect_uri = params.get("redirect_uri", "")
    # 1:1, no normalisation: a trailing slash or another port is a mismatch, as on Allegro.
    if redirect_uri not in client.redirect_uris:
        raise AuthorizeErrorPage("Redirect URI mismatch")

    request = AuthorizeRequest(
        client=client,
        redirect_uri=redirect_uri,
        state=params.get("state"),
        scopes=(),
        prompt=params.get("prompt"),
        code_challenge=None,
        extra=tuple(extra),
        query=urlencode(list(pairs), quote_via=quote),
    )

    def fail(error: str, description: str) -> AuthorizeErrorRedirect:
        return AuthorizeErrorRedirect(request.error_location(error, description))

    response_type = params.get("response_type")
    if not response_type:
        raise fail("invalid_request", "A response type must be supplied.")
    if response_type != "code":
        raise fail("unsupported_response_type", f"Unsupported response types: [{response_type}]")

    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is not None or method is not None:
        # Without a method RFC 7636 means "plain", which Allegro refuses since 2024-12-30.
        if method != "S256":
            raise fail("invalid_request", f"Unsupported code_challenge_method: {method or 'plain'}")
        if challenge is None or not is_valid_challenge(challenge):
            raise fail("invalid_request", "Invalid code_challenge")

    requested = params.get("scope", "").split()
    unknown = [scope for scope in requested if scope not in ALL_SCOPES]
    if unknown:
        fragment = urlencode(
            [("error", "invalid_scope"), ("error_description", f"Invalid scope: {' '.join(unknown)}")],
            quote_via=quote,
        )
        raise AuthorizeErrorRedirect(f"{INVALID_SCOPE_PATH}#{fragment}")
    # Asking for more than the app declared quietly gives only the declared ones.
    declared = tuple(client.scopes)
    scopes = (
        tuple(scope for scope in dict.fromkeys(requested) if scope in declared) if requested else declared
    )

    return AuthorizeRequest(
        client=client,
        redirect_uri=redirect_uri,
        state=request.state,
        scopes=scopes,
        prompt=request.prompt,
        code_challenge=challenge,
        extra=request.extra,
        query=request.query,
    )


def with_query(url: str, pairs: Pairs) -> str:
    """`url` with `pairs` appended to its query, each value percent-encoded once.

    The values arrive decoded, so encoding them once gives the client back exactly what it sent when
    it sent them encoded, and the encoded form when it did not (Allegro's rule since 2025-05-01).
    """
    parts = urlsplit(url)
    added = urlencode(list(pairs), quote_via=quote, safe="")
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
