"""The tokens one link holds in memory (never on disk), and the decisions about reusing them.

The locking around these decisions differs (a `threading.Lock` per account for `AllegroLink`, an
`asyncio.Lock` for `AsyncAllegroLink`); the decisions themselves are the same and live here.
"""

from __future__ import annotations

import uuid

from allegro_link_client._models import Token


class TokenCache:
    def __init__(self) -> None:
        self._tokens: dict[uuid.UUID, Token] = {}

    def usable(self, account_id: uuid.UUID, min_valid_for: float) -> Token | None:
        """The held token if it stays valid for more than `min_valid_for` seconds."""
        token = self._tokens.get(account_id)
        return token if token is not None and token.valid_for() > min_valid_for else None

    def replacement(self, account_id: uuid.UUID, rejected: str, min_valid_for: float) -> Token | None:
        """A held token other than the rejected one: someone reported that one already and got this."""
        token = self.usable(account_id, min_valid_for)
        return token if token is not None and token.access_token != rejected else None

    def keep(self, token: Token) -> Token:
        self._tokens[token.account_id] = token
        return token

    def forget(self, account_id: uuid.UUID) -> None:
        self._tokens.pop(account_id, None)
