"""The OAuth parameters the fake reads: the authorization request's query and the token endpoint's form.

One place for their names, used by the HTML flow, the `/__fake__/authorize` shortcut and the token
endpoint alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The authorization request's own parameters. Everything else in its query is the client's and is
# handed back on the redirect.
AUTHORIZE_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "scope",
        "prompt",
        "code_challenge",
        "code_challenge_method",
    }
)


@dataclass(frozen=True, slots=True)
class TokenForm:
    """The token endpoint's form fields; None where a field was not sent (empty is not absent)."""

    grant_type: str | None
    client_id: str | None
    code: str | None
    redirect_uri: str | None
    code_verifier: str | None
    refresh_token: str | None

    @classmethod
    def parse(cls, form: Mapping[str, str]) -> TokenForm:
        return cls(
            grant_type=form.get("grant_type"),
            client_id=form.get("client_id"),
            code=form.get("code"),
            redirect_uri=form.get("redirect_uri"),
            code_verifier=form.get("code_verifier"),
            refresh_token=form.get("refresh_token"),
        )
