"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256>` of `id.timestamp.body`, one per live secret."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(
    secrets_: Sequence[str], *, event_id: str, timestamp: datetime, body: str
) -> dict[str, str]:
    """The headers of one delivery; during a rotation both secrets sign (space-separated signatures)."""
    signatures = " ".join(
        Webhook(secret).sign(msg_id=event_id, timestamp=timestamp, data=body) for secret in secrets_
    )
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
