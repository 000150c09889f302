"""The `return_to` allowlist: where the browser may be sent back after Allegro.

An exact match of scheme, host and port (a written-out default port is the same port) and a path
under the entry's path. Anything that browsers and URL parsers might read differently is refused
outright rather than normalised: backslashes, control characters, user info, encoded slashes or dots,
dot segments. An open redirect here would hand an attacker a trusted-looking link to anywhere.

A `return_to` must not already carry a parameter that the callback adds (`allegro_link`, `link_session`,
`error`): the frontend would read the planted one (a link "cancelled" before it began, or a foreign
`link_session`) instead of, or next to, ours. Names are compared the way the laxest reader would see
them (decoded, any case, PHP's `a.b`/`a b`/`a[]` forms), in the query and in a fragment that carries one
(hash routers read their query from the fragment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote_plus, urlencode, urlsplit, urlunsplit

from allegro_link.errors import Problem

MAX_RETURN_TO_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]|%(?:2f|5c|2e|00)", re.IGNORECASE)
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")
# The parameters the callback appends (see `with_query` callers in flow.py).
CALLBACK_PARAMETERS = frozenset({"allegro_link", "link_session", "error"})
# Enough rounds to undo any encoding a 2048-character URL can hold in practice; more means refuse.
_MAX_DECODE_ROUNDS = 4


class InvalidReturnTo(Problem):
    status = 422
    code = "invalid_return_to"
    title = "return_to is not allowed"


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    path: str


def _origin(parts: SplitResult) -> _Origin | None:
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return _Origin(scheme, parts.hostname.lower().rstrip("."), port, parts.path or "/")


class ReturnToPolicy:
    def __init__(self, allowlist: list[str]) -> None:
        self._entries = [origin for entry in allowlist if (origin := _origin(urlsplit(entry)))]

    def check(self, return_to: str) -> str:
        """The URL unchanged when allowed; `InvalidReturnTo` otherwise."""
        if len(return_to) > MAX_RETURN_TO_LENGTH or _FORBIDDEN.search(return_to):
            raise InvalidReturnTo("return_to contains characters that are not allowed.")
        try:
            parts = urlsplit(return_to)
        except ValueError:
            # urlsplit refuses some hosts outright (a bracket without its pair, characters that NFKC
            # turns into '/', '?', '#' or '@'): nothing a browser should be sent to.
            raise InvalidReturnTo("return_to is not a valid URL.") from None
        if "@" in parts.netloc or parts.username is not None:
            raise InvalidReturnTo("return_to must not contain user information.")
        if _DOT_SEGMENT.search(parts.path):
            raise InvalidReturnTo("return_to must not contain dot segments.")
        if _carries_callback_parameter(parts):
            raise InvalidReturnTo(
                "return_to must not carry the parameters the callback adds "
                f"({', '.join(sorted(CALLBACK_PARAMETERS))})."
            )
        origin = _origin(parts)
        if origin is None:
            raise InvalidReturnTo("return_to must be an absolute http(s) URL.")
        for entry in self._entries:
            if (origin.scheme, origin.host, origin.port) == (
                entry.scheme,
                entry.host,
                entry.port,
            ) and origin.path.startswith(entry.path):
                return return_to
        raise InvalidReturnTo("return_to is not in the allowlist.")


def _carries_callback_parameter(parts: SplitResult) -> bool:
    # A fragment's own query starts at its first '?' ("#/konta?error=x"); a fragment without one may
    # still be read as a query by a hand-written router ("#error=x"), so the whole fragment counts then.
    fragment = parts.fragment
    fragment_query = fragment.partition("?")[2] if "?" in fragment else fragment
    for query in (parts.query, fragment_query):
        for pair in query.split("&"):
            if _parameter_name(pair.partition("=")[0]) in CALLBACK_PARAMETERS:
                return True
    return False


def _parameter_name(raw: str) -> str:
    """A query parameter's name as the laxest reader would see it."""
    name = raw
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    else:
        return "error"  # still encoded after every round: treated as the worst case, refused
    # PHP reads "allegro.link", "allegro link" and "error[]" as allegro_link and error.
    name = name.split("[", 1)[0].strip().casefold()
    return name.replace(".", "_").replace(" ", "_")


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` appended to its query (existing parameters are kept)."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
