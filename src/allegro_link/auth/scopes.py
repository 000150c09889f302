"""What a service API key may be allowed to do, and the marker every key starts with.

The one list that the key store, the role checks, the CLI's `--scope` choices and `allegro-link dev`
share; it imports nothing, so that the log redaction can use the marker too.
"""

from __future__ import annotations

# Every API key starts with it, which tells a key from an owner JWT in the same Bearer header.
KEY_MARKER = "alk_"

TOKENS_READ = "tokens:read"
ACCOUNTS_READ = "accounts:read"
EVENTS_READ = "events:read"

# Each scope and what it allows, in the order the CLI's help lists them.
SCOPES: dict[str, str] = {
    TOKENS_READ: "fetches access tokens",
    ACCOUNTS_READ: "lists accounts and their history",
    EVENTS_READ: "reads the event feed",
}
KNOWN_SCOPES = frozenset(SCOPES)
