"""Managing webhook endpoints (the CLI's work): add, list, remove, rotate a secret, replay events."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from allegro_link.accounts.events import EVENTS_CHANNEL, EventType
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import utcnow, uuid7
from allegro_link.webhooks.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from allegro_link.webhooks.signing import new_secret

ROTATION_OVERLAP = timedelta(hours=24)
LOOPBACK_NAMES = frozenset({"localhost"})


class WebhookError(Exception):
    """A bad URL, type or id; the message is for the operator."""


@dataclass(frozen=True, slots=True)
class EndpointReport:
    id: uuid.UUID
    url: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    undelivered: int
    failed: int
    oldest_undelivered_at: datetime | None
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None


def check_url(url: str) -> str:
    """https only, except loopback hosts (a local receiver in development and tests)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookError(f"not an absolute http(s) URL: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise WebhookError("the URL must not carry user information")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise WebhookError("webhook URLs must use https:// (http:// only for loopback hosts)")
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_types(types: list[str]) -> list[str]:
    known = {member.value for member in EventType}
    unknown = sorted(set(types) - known)
    if unknown:
        raise WebhookError(f"unknown event type {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return sorted(set(types))


async def add_endpoint(
    session: AsyncSession, vault: TokenVault, *, url: str, event_types: list[str]
) -> tuple[uuid.UUID, str]:
    """A new endpoint; returns its id and its secret (shown once, stored encrypted)."""
    endpoint_id = uuid7()
    secret = new_secret()
    session.add(
        WebhookEndpoint(
            id=endpoint_id,
            url=check_url(url),
            event_types=check_types(event_types),
            secret_ciphertext=vault.seal(WebhookEndpoint.secret_ciphertext, endpoint_id, secret),
        )
    )
    return endpoint_id, secret


async def list_endpoints(session: AsyncSession) -> list[EndpointReport]:
    pending = WebhookDelivery.state == DeliveryState.PENDING
    stats = (
        select(
            WebhookDelivery.endpoint_id,
            func.count().filter(pending).label("undelivered"),
            func.count().filter(WebhookDelivery.state == DeliveryState.FAILED).label("failed"),
            func.min(WebhookDelivery.created_at).filter(pending).label("oldest"),
            func.max(WebhookDelivery.delivered_at).label("last_success"),
        )
        .group_by(WebhookDelivery.endpoint_id)
        .subquery()
    )
    rows = (
        await session.execute(
            select(WebhookEndpoint, stats.c.undelivered, stats.c.failed, stats.c.oldest, stats.c.last_success)
            .outerjoin(stats, stats.c.endpoint_id == WebhookEndpoint.id)
            .order_by(WebhookEndpoint.created_at)
        )
    ).all()
    return [
        EndpointReport(
            id=endpoint.id,
            url=endpoint.url,
            event_types=list(endpoint.event_types),
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            undelivered=undelivered or 0,
            failed=failed or 0,
            oldest_undelivered_at=oldest,
            last_success_at=last_success,
            last_error_at=endpoint.last_error_at,
            last_error=endpoint.last_error,
        )
        for endpoint, undelivered, failed, oldest, last_success in rows
    ]


async def remove_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    """Gone with its outbox rows (cascade); the events stay in the log and the feed."""
    result = await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise WebhookError(f"no webhook endpoint {endpoint_id}")


async def rotate_secret(session: AsyncSession, vault: TokenVault, endpoint_id: uuid.UUID) -> str:
    """A new secret; the current one keeps signing too for 24 hours, so receivers can switch over."""
    endpoint = await _get(session, endpoint_id)
    current = vault.open(WebhookEndpoint.secret_ciphertext, endpoint.id, endpoint.secret_ciphertext)
    secret = new_secret()
    endpoint.previous_secret_ciphertext = vault.seal(
        WebhookEndpoint.previous_secret_ciphertext, endpoint.id, current
    )
    endpoint.previous_secret_expires_at = utcnow() + ROTATION_OVERLAP
    endpoint.secret_ciphertext = vault.seal(WebhookEndpoint.secret_ciphertext, endpoint.id, secret)
    return secret


_REPLAY = text(
    """
    INSERT INTO webhook_deliveries (endpoint_id, event_pk, account_id, state, attempts, next_attempt_at)
    SELECT :endpoint_id, e.id, e.account_id, 'pending', 0, now()
    FROM account_events AS e
    WHERE e.occurred_at >= :since AND (cardinality(CAST(:types AS varchar[])) = 0 OR e.type = ANY(:types))
    ON CONFLICT (endpoint_id, event_pk) DO UPDATE
        SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL, delivered_at = NULL
    RETURNING 1
    """
)


async def replay(session: AsyncSession, endpoint_id: uuid.UUID, since: datetime) -> int:
    """Queue every matching event since `since` again (same event ids); returns how many."""
    endpoint = await _get(session, endpoint_id)
    result = await session.execute(
        _REPLAY, {"endpoint_id": endpoint.id, "since": since, "types": list(endpoint.event_types)}
    )
    count = len(result.all())
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": EVENTS_CHANNEL})
    return count


async def _get(session: AsyncSession, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    if endpoint is None:
        raise WebhookError(f"no webhook endpoint {endpoint_id}")
    return endpoint
