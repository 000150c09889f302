"""Webhook delivery workers: take outbox rows with SKIP LOCKED, POST them signed, record the outcome.

Each delivery runs in its own transaction that keeps the outbox row locked while the POST is in flight:
no other worker (in this replica or another) takes it meanwhile, and if this replica dies mid-delivery
its connection closes, the lock goes with it, and another replica takes the row again (at least once).
A row is taken only when no earlier event of the same account is still pending for the same endpoint,
so an endpoint gets one account's events in order while other accounts' events flow. The workers use
their own engine (a pool of `webhook_concurrency + 2`) and their own HTTP client, and cap in-flight
deliveries per endpoint, so a slow endpoint holds neither token requests nor other endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link import __version__
from allegro_link.accounts.models import AccountEvent
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import utcnow
from allegro_link.events.schemas import EventOut
from allegro_link.events.signals import EventSignals, Signal
from allegro_link.ops.metrics import Metrics
from allegro_link.webhooks.models import WebhookEndpoint
from allegro_link.webhooks.signing import signed_headers

log = structlog.get_logger(__name__)

# A row is claimable when it is the oldest pending one of its (endpoint, account) chain: `min()` is one
# probe of the chain index, and the scan in `next_attempt_at` order stops at the first claimable row.
# (A NOT EXISTS anti-join here was planned as a full scan plus sort: a second per claim at 3,000 rows.)
_CLAIM = text(
    """
    WITH claimed AS (
        SELECT d.id, d.attempts, d.endpoint_id, d.event_pk
        FROM webhook_deliveries AS d
        WHERE d.state = 'pending' AND d.next_attempt_at <= now()
          AND NOT (d.endpoint_id = ANY(CAST(:busy AS uuid[])))
          AND d.endpoint_id IN (SELECT id FROM webhook_endpoints WHERE enabled)
          AND d.event_pk = (
              SELECT min(chain.event_pk) FROM webhook_deliveries AS chain
              WHERE chain.endpoint_id = d.endpoint_id AND chain.account_id = d.account_id
                AND chain.state = 'pending'
          )
        ORDER BY d.next_attempt_at
        LIMIT 1
        FOR UPDATE OF d SKIP LOCKED
    )
    SELECT claimed.id, claimed.attempts, claimed.endpoint_id, ep.url, ep.secret_ciphertext,
           ep.previous_secret_ciphertext, ep.previous_secret_expires_at, claimed.event_pk
    FROM claimed JOIN webhook_endpoints AS ep ON ep.id = claimed.endpoint_id
    """
)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    retry_delays: Sequence[float]
    timeout_seconds: float
    concurrency: int
    poll_seconds: float

    @property
    def per_endpoint(self) -> int:
        # Half the slots at most: one dead endpoint never takes all of them.
        return max(1, self.concurrency // 2)

    def next_delay(self, attempts: int) -> float | None:
        """Seconds before the next try after `attempts` failed ones; None when the schedule is spent."""
        if attempts > len(self.retry_delays):
            return None
        return self.retry_delays[attempts - 1] * random.uniform(0.8, 1.2)  # noqa: S311 - jitter


@dataclass(frozen=True, slots=True)
class _Claim:
    """One taken outbox row, with what its POST needs (columns in `_CLAIM`'s order)."""

    id: int
    attempts: int
    endpoint_id: uuid.UUID
    url: str
    secret_ciphertext: bytes
    previous_secret_ciphertext: bytes | None
    previous_secret_expires_at: datetime | None
    event_pk: int


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    status: int | None
    error: str | None


def create_webhook_client(policy: DeliveryPolicy) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(policy.timeout_seconds),
        follow_redirects=False,  # a redirect is a failure: never POST events somewhere else
        limits=httpx.Limits(max_connections=policy.concurrency, max_keepalive_connections=policy.concurrency),
        headers={"User-Agent": f"allegro-link-webhooks/{__version__}"},
    )


class DeliveryWorkers:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: TokenVault,
        metrics: Metrics,
        signals: EventSignals,
        policy: DeliveryPolicy,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._vault = vault
        self._metrics = metrics
        self._signals = signals
        self._policy = policy
        self._in_flight: Counter[uuid.UUID] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = Signal()

    async def run_forever(self) -> None:
        async with create_webhook_client(self._policy) as http:
            try:
                while True:
                    mark = self._signals.appended.mark()
                    freed = self._slot_freed.mark()
                    try:
                        await self._fill_slots(http)
                    except Exception as exc:  # a database blip must not kill the loop
                        log.warning("webhooks.claim_failed", error=type(exc).__name__)
                    await _first_of(mark, freed, self._policy.poll_seconds)
            finally:
                for task in self._tasks:
                    task.cancel()
                for task in list(self._tasks):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _fill_slots(self, http: httpx.AsyncClient) -> None:
        while len(self._tasks) < self._policy.concurrency:
            session = self._sessionmaker()
            busy = [endpoint for endpoint, n in self._in_flight.items() if n >= self._policy.per_endpoint]
            try:
                found = (await session.execute(_CLAIM, {"busy": busy})).one_or_none()
            except BaseException:
                await session.close()
                raise
            if found is None:
                await session.close()
                return
            row = _Claim(*found)
            self._in_flight[row.endpoint_id] += 1
            task = asyncio.create_task(self._deliver(session, row, http), name=f"webhook-{row.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, session: AsyncSession, row: _Claim, http: httpx.AsyncClient) -> None:
        endpoint_id = row.endpoint_id
        try:
            async with session:
                event = await session.get(AccountEvent, row.event_pk)
                assert event is not None  # noqa: S101 - joined in the claim, and events are never deleted
                outcome = await self._post(http, row, EventOut.build(event))
                await self._record(session, row, outcome)
                await session.commit()
        except Exception as exc:  # the row stays pending (rolled back) and is taken again
            log.warning("webhooks.delivery_crashed", delivery_id=row.id, error=type(exc).__name__)
        finally:
            self._in_flight[endpoint_id] -= 1
            if self._in_flight[endpoint_id] <= 0:
                del self._in_flight[endpoint_id]
            self._slot_freed.fire()

    async def _post(self, http: httpx.AsyncClient, row: _Claim, event: EventOut) -> Outcome:
        now = utcnow()
        live = [self._vault.open(WebhookEndpoint.secret_ciphertext, row.endpoint_id, row.secret_ciphertext)]
        previous, until = row.previous_secret_ciphertext, row.previous_secret_expires_at
        if previous is not None and until is not None and until > now:
            live.append(
                self._vault.open(WebhookEndpoint.previous_secret_ciphertext, row.endpoint_id, previous)
            )
        body = event.model_dump_json()
        headers = signed_headers(live, event_id=event.id, timestamp=now, body=body)
        try:
            response = await http.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(ok=False, status=None, error=type(exc).__name__)
        if 200 <= response.status_code < 300:
            return Outcome(ok=True, status=response.status_code, error=None)
        return Outcome(ok=False, status=response.status_code, error=f"HTTP {response.status_code}")

    async def _record(self, session: AsyncSession, row: _Claim, outcome: Outcome) -> None:
        attempts = row.attempts + 1
        params = {"id": row.id, "endpoint_id": row.endpoint_id, "attempts": attempts, "error": outcome.error}
        if outcome.ok:
            await session.execute(
                text(
                    "UPDATE webhook_deliveries SET state = 'delivered', attempts = :attempts, "
                    "delivered_at = now(), last_error = NULL WHERE id = :id"
                ),
                params,
            )
            self._metrics.webhook_deliveries.labels("delivered").inc()
            return
        if outcome.status == 410:
            # The receiver says it is gone for good: stop sending (the backlog stays, for `list`).
            await session.execute(
                text(
                    "UPDATE webhook_endpoints SET enabled = false, disabled_reason = '410 Gone', "
                    "last_error = :error, last_error_at = now() WHERE id = :endpoint_id"
                ),
                params,
            )
            await session.execute(
                text(
                    "UPDATE webhook_deliveries SET attempts = :attempts, last_error = :error WHERE id = :id"
                ),
                params,
            )
            self._metrics.webhook_deliveries.labels("gone").inc()
            log.warning("webhooks.endpoint_gone", endpoint_id=str(row.endpoint_id))
            return
        delay = self._policy.next_delay(attempts)
        if delay is None:
            statement = (
                "UPDATE webhook_deliveries SET state = 'failed', attempts = :attempts, last_error = :error "
                "WHERE id = :id"
            )
            self._metrics.webhook_deliveries.labels("failed").inc()
        else:
            params["next"] = utcnow() + timedelta(seconds=delay)
            statement = (
                "UPDATE webhook_deliveries SET attempts = :attempts, last_error = :error, "
                "next_attempt_at = :next WHERE id = :id"
            )
            self._metrics.webhook_deliveries.labels("retry").inc()
        await session.execute(text(statement), params)
        await session.execute(
            text(
                "UPDATE webhook_endpoints SET last_error = :error, last_error_at = now() "
                "WHERE id = :endpoint_id"
            ),
            params,
        )
        log.info(
            "webhooks.delivery_failed",
            endpoint_id=str(row.endpoint_id),
            delivery_id=row.id,
            attempts=attempts,
            error=outcome.error,
            final=delay is None,
        )


async def _first_of(mark: asyncio.Event, freed: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(mark.wait()), asyncio.ensure_future(freed.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
