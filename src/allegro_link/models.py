"""Every table, imported once so that Alembic and the tests see the whole metadata."""

from allegro_link.accounts.models import Account, AccountEvent
from allegro_link.auth.models import ApiKey
from allegro_link.db import Base
from allegro_link.oauth.models import LinkSession
from allegro_link.tokens.models import TokenIssue
from allegro_link.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = [
    "Account",
    "AccountEvent",
    "ApiKey",
    "Base",
    "LinkSession",
    "TokenIssue",
    "WebhookDelivery",
    "WebhookEndpoint",
]
