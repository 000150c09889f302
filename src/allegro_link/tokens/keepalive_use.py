"""Keep-alive by use: a real API call for every active account nobody has used in a while.

Allegro withdraws an application's access to an account it has not used for more than 90 days, and
it is not documented whether a refresh counts as use. So an active account not
used for `use_after` gets `GET /me` with a valid token (the broker refreshes it first when needed).

Every replica runs this. An account is claimed before it is called: one short transaction takes the
least recently used candidate with `FOR UPDATE SKIP LOCKED` and stamps `keepalive_claimed_at`, which
keeps every other replica off it for `lease`; the call itself runs outside any row lock, so a token
request for that account never waits for it. A success moves `last_used_at` (and with it the re-login
deadline) and clears the claim; a failure keeps the claim, so the account is tried again once the
lease has passed, and records since when it has been failing (for `/metrics`).

Nothing is called while the broker's breakers are open: during an Allegro outage a call teaches
nothing, and a refusal during one must not flag an account. A `/me` that fails for Allegro's reasons
ends the pass (the next one tries again) but does not open the token endpoint's breaker: the API host
failing says nothing about the token endpoint that services' token requests depend on.
"""

from __future__ import annotations

import enum
import uuid
from datetime import timedelta

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.accounts.models import Account, AccountStatus
from allegro_link.allegro.client import AllegroClient, AllegroRejected, AllegroUnavailable
from allegro_link.db import utcnow
from allegro_link.errors import DatabaseUnavailable
from allegro_link.ops.metrics import Metrics
from allegro_link.tokens.broker import TokenBroker
from allegro_link.tokens.problems import AllegroUnavailableProblem, ReloginRequired
from allegro_link.tokens.ratelimit import RateLimiter
from allegro_link.tokens.reads import IssuedToken

log = structlog.get_logger(__name__)

# The token the call is made with must outlive the call (and its retries) comfortably.
USE_MIN_VALID = timedelta(seconds=60)
USE_BATCH = 500


class Outcome(enum.Enum):
    USED = "used"
    FAILED = "failed"
    ALLEGRO_UNAVAILABLE = "allegro_unavailable"
    RELOGIN_REQUIRED = "relogin_required"


class KeepAliveUse:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        broker: TokenBroker,
        allegro: AllegroClient,
        metrics: Metrics,
        *,
        use_after: timedelta,
        lease: timedelta,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._broker = broker
        self._allegro = allegro
        self._metrics = metrics
        self._use_after = use_after
        self._lease = lease

    async def run_pass(self, limiter: RateLimiter, *, limit: int = USE_BATCH) -> int:
        """Call `/me` for the accounts due now, one claim at a time; returns how many were used."""
        used = 0
        for _ in range(limit):
            if self._allegro_suspended():
                break
            account_id = await self._claim()
            if account_id is None:
                break
            await limiter.acquire()
            try:
                outcome = await self.use(account_id)
            except (
                Exception
            ) as exc:  # one account's trouble (deleted meanwhile, a DB blip) must not stop the pass
                log.warning(
                    "keepalive.use.account_failed", account_id=str(account_id), error=type(exc).__name__
                )
                continue
            if outcome is Outcome.USED:
                used += 1
            elif outcome is Outcome.ALLEGRO_UNAVAILABLE:
                break
        if used:
            log.info("keepalive.use.pass", used=used)
        return used

    async def use(self, account_id: uuid.UUID) -> Outcome:
        """One claimed account: a valid token, `GET /me`, and the outcome written down."""
        try:
            await self._call(account_id)
        except ReloginRequired:
            # The broker has flagged the account (or found it flagged): it is no longer active.
            self._metrics.keepalive_uses.labels("relogin_required").inc()
            return Outcome.RELOGIN_REQUIRED
        except (AllegroUnavailable, AllegroUnavailableProblem) as exc:
            await self._failed(account_id, exc)
            return Outcome.ALLEGRO_UNAVAILABLE
        except (AllegroRejected, DatabaseUnavailable, TimeoutError) as exc:
            await self._failed(account_id, exc)
            return Outcome.FAILED
        async with self._sessionmaker.begin() as session:
            await session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(
                    last_used_at=func.greatest(Account.last_used_at, utcnow()),
                    keepalive_claimed_at=None,
                    keepalive_failed_at=None,
                )
            )
        self._metrics.keepalive_uses.labels("used").inc()
        log.info("keepalive.used", account_id=str(account_id))
        return Outcome.USED

    async def _call(self, account_id: uuid.UUID) -> None:
        issued = await self._broker.token(account_id, min_valid_for=USE_MIN_VALID)
        try:
            await self._allegro.me(issued.access_token)
            return
        except AllegroRejected as exc:
            if not exc.refuses_account:
                raise
            if issued.refreshed:
                await self._refused(issued, exc)
        # A held token can be dead before its expiry (a newer refresh elsewhere killed it): only a
        # refusal of a token refreshed just before the call says something about the account.
        issued = await self._broker.refresh(
            account_id, min_valid_for=USE_MIN_VALID, rejected_token=issued.access_token
        )
        try:
            await self._allegro.me(issued.access_token)
        except AllegroRejected as exc:
            if exc.refuses_account and issued.refreshed:
                await self._refused(issued, exc)
            raise

    async def _refused(self, issued: IssuedToken, exc: AllegroRejected) -> None:
        # Raises ReloginRequired when the account is flagged; returns when it is not (our own client
        # credentials are broken, or the token was replaced meanwhile): a failed keep-alive then.
        await self._broker.call_refused(issued.account_id, issued.token_version, exc)
        raise exc

    async def _claim(self) -> uuid.UUID | None:
        now = func.now()
        candidate = (
            select(Account.id)
            .where(
                Account.status == AccountStatus.ACTIVE,
                or_(Account.last_used_at.is_(None), Account.last_used_at < now - self._use_after),
                Account.refresh_token_expires_at > now,  # a dead refresh token gets no keep-alive
                or_(
                    Account.keepalive_claimed_at.is_(None),
                    Account.keepalive_claimed_at < now - self._lease,
                ),
            )
            .order_by(Account.last_used_at.asc().nulls_first())
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self._sessionmaker.begin() as session:
            claimed = await session.execute(
                update(Account)
                .where(Account.id == candidate)
                .values(keepalive_claimed_at=now)
                .returning(Account.id)
                .execution_options(synchronize_session=False)
            )
            return claimed.scalar_one_or_none()

    async def _failed(self, account_id: uuid.UUID, exc: Exception) -> None:
        self._metrics.keepalive_uses.labels("failed").inc()
        log.warning("keepalive.use.failed", account_id=str(account_id), error=type(exc).__name__)
        async with self._sessionmaker.begin() as session:
            await session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(keepalive_failed_at=func.coalesce(Account.keepalive_failed_at, utcnow()))
            )

    def _allegro_suspended(self) -> bool:
        return self._broker.outage.remaining() > 0 or self._broker.credentials.remaining() > 0
