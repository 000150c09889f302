"""A user's consent at the fake Allegro, as the tests, the bench's refresh storm and the soak give it."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    import httpx

# What the fake's `POST /__fake__/authorize` takes from the authorization request the service built.
AUTHORIZATION_FIELDS = ("client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method")


class ConsentFailed(RuntimeError):
    """The fake Allegro did not accept the authorization request."""


def query_params(url: str) -> dict[str, str]:
    """The query of `url`, the first value of each name."""
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


async def consent(fake: httpx.AsyncClient, authorization_url: str, login: str) -> str:
    """Log in at the fake Allegro (`fake`'s base URL) as `login` and consent to `authorization_url`;
    returns the callback URL the fake redirects to. The fake's shortcut for its HTML pages, with their
    validation: the user is created if new."""
    query = query_params(authorization_url)
    response = await fake.post(
        "/__fake__/authorize", json={"login": login} | {name: query[name] for name in AUTHORIZATION_FIELDS}
    )
    if response.status_code != 200:
        raise ConsentFailed(f"the fake Allegro answered {response.status_code}: {response.text}")
    redirect: str = response.json()["redirect"]
    return redirect
