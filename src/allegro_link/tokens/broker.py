"""Valid access tokens for internal services: the one place that refreshes.

Allegro rotates refresh tokens (the old one dies 60 s after first use) and kills the previous access
token on every refresh. So, for each account:

- at most one refresh at a time across all replicas: callers in one process share one in-flight
  refresh (`_refreshes`, a `SingleFlight`), and processes serialise on the account row (`SELECT …
  FOR UPDATE`) and re-read it once they hold the lock, so a waiter usually finds the work already done;
- before calling Allegro, a refresh commits a marker on the row (`refresh_started_at`), cleared by the
  commit of the new pair. A reader on any replica that finds a marker older than the refresh deadline
  knows that a refresh may have killed the stored access token without storing its successor (its
  replica lost the database, or died): it refreshes under the row lock instead of handing that token
  out, or answers 503;
- the rotated pair is committed before anyone sees the new access token. A failed commit is retried;
  if the database stays away the pair is kept in memory (`rows.RotatedPairs`) and written as soon as it
  can be, and the caller gets 503, never an unsaved token. Should the process die too, the old refresh
  token stays usable for Allegro's 60 s grace, so the next refresh by any replica still works;
- failures are classified: `invalid_grant` or a 401 for this account (confirmed by checking our own
  client credentials) make it `relogin_required`; timeouts, 5xx, 429 and malformed answers never do;
- waits are bounded: the Allegro call's deadline is shorter than the lock wait, which is shorter than
  the statement timeout.

This module holds the decisions. A refresh must commit the rotated token before it answers, the
documented exception to "the request owns the transaction": its writes, each in a transaction of its
own, are in `rows.py`; the fast read of the row in `reads.py`; the problems it answers with in
`problems.py`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.accounts.models import Account, AccountStatus, ReloginReason
from allegro_link.accounts.service import AccountNotFound
from allegro_link.accounts.status import effective_status
from allegro_link.allegro.client import AllegroClient, AllegroRejected, AllegroUnavailable
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import is_lock_timeout, utcnow
from allegro_link.errors import DatabaseUnavailable
from allegro_link.ops.metrics import Metrics
from allegro_link.singleflight import SingleFlight
from allegro_link.tokens.breaker import CredentialsBreaker, OutageBreaker
from allegro_link.tokens.problems import AllegroUnavailableProblem, ReloginRequired
from allegro_link.tokens.reads import AccountReads, IssuedToken, is_current, issue
from allegro_link.tokens.rows import (
    RotatedPairs,
    UnsavedPair,
    lock_row,
    mark_refreshing,
    release,
    require_relogin,
)

log = structlog.get_logger(__name__)

# A held token is still handed out during an Allegro outage if it has at least this long to live.
SERVE_DURING_OUTAGE_MIN = timedelta(seconds=60)
FORCED_REFRESH_INTERVAL = timedelta(seconds=10)
DEFAULT_RETRY_AFTER = 5.0


@dataclass(frozen=True, slots=True)
class _Want:
    """What a caller needs from a refresh."""

    min_valid_for: timedelta
    force: bool = False
    seen_version: int | None = None  # forced: the version whose access token Allegro rejected
    trigger: str = "request"


class TokenBroker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        allegro: AllegroClient,
        vault: TokenVault,
        metrics: Metrics,
        *,
        allegro_deadline_seconds: float,
        lock_timeout_seconds: float,
        read_concurrency: int,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._reads = AccountReads(sessionmaker.kw["bind"], read_concurrency)
        self._allegro = allegro
        self._vault = vault
        self._metrics = metrics
        self._deadline = allegro_deadline_seconds
        self._lock_timeout_ms = int(lock_timeout_seconds * 1000)
        self._refreshes: SingleFlight[uuid.UUID, IssuedToken] = SingleFlight("token-refresh")
        self._pairs = RotatedPairs(sessionmaker, vault, write_unsaved=self._write_unsaved)
        self.outage = OutageBreaker(metrics)
        self.credentials = CredentialsBreaker(allegro.client_credentials_valid)

    # -- public ------------------------------------------------------------------------------------

    async def token(self, account_id: uuid.UUID, *, min_valid_for: timedelta) -> IssuedToken:
        """A token valid for at least `min_valid_for`, refreshing first when needed."""
        async with self._reads.gate:
            # Checked once through the gate: in a burst on an expired account, the refresh has usually
            # started while this caller queued, and its answer is this caller's too. Skipping the read
            # here is most of what keeps a refresh storm short.
            refreshing = account_id in self._refreshes
            account = None if refreshing else await self._reads.fetch(account_id)
        if account is None:
            return await self._coalesced(account_id, _Want(min_valid_for))
        _ensure_active(account)
        if not self._pairs.holds_unsaved(account_id) and self._usable_for(account) >= min_valid_for:
            return issue(self._vault, account, refreshed=False)
        return await self._coalesced(account_id, _Want(min_valid_for))

    async def refresh(
        self, account_id: uuid.UUID, *, min_valid_for: timedelta, rejected_token: str | None
    ) -> IssuedToken:
        """The caller's Allegro call got 401 with `rejected_token` (or it wants a refresh now)."""
        account = await self._reads.read(account_id)
        _ensure_active(account)
        if rejected_token is not None and not is_current(self._vault, account, rejected_token):
            # Already replaced: the stored token is the answer, refreshed only if it is itself stale.
            if not self._pairs.holds_unsaved(account_id) and self._usable_for(account) >= min_valid_for:
                return issue(self._vault, account, refreshed=False)
            return await self._coalesced(account_id, _Want(min_valid_for))
        want = _Want(min_valid_for, force=True, seen_version=account.token_version, trigger="forced")
        return await self._coalesced(account_id, want)

    async def refresh_if_due(self, account_id: uuid.UUID, due_before: datetime) -> bool:
        """Keep-alive: refresh when the refresh token expires before `due_before`. Skips locked rows."""
        async with self._sessionmaker() as session:
            account = (
                await session.execute(
                    select(Account)
                    .where(Account.id == account_id)
                    .with_for_update(skip_locked=True)
                    .execution_options(populate_existing=True)
                )
            ).scalar_one_or_none()
            now = utcnow()
            if (
                account is None
                or effective_status(account, now).status is not AccountStatus.ACTIVE
                or account.refresh_token_expires_at is None
                or account.refresh_token_expires_at >= due_before
            ):
                return False
            want = _Want(timedelta(0), force=True, seen_version=account.token_version, trigger="keepalive")
            try:
                issued = await self._refresh_holding_lock(session, account, want)
            except (ReloginRequired, AllegroUnavailableProblem, DatabaseUnavailable):
                return False
            return issued.refreshed

    async def call_refused(self, account_id: uuid.UUID, token_version: int, exc: AllegroRejected) -> None:
        """Keep-alive: Allegro refused an API call made with a token refreshed just before it.

        Handled like a refused refresh: the account needs a re-login (`grant_revoked`), unless the
        client-credentials check says our own secret is what Allegro refuses, or the token has been
        replaced meanwhile; then this returns and the caller counts a failed keep-alive.
        """
        await self._rejected(account_id, token_version, exc, _Want(timedelta(0), trigger="keepalive"))

    async def aclose(self) -> None:
        self._refreshes.cancel_all()
        await self._pairs.aclose()
        await self.credentials.aclose()

    # -- single flight -----------------------------------------------------------------------------

    async def _coalesced(self, account_id: uuid.UUID, want: _Want) -> IssuedToken:
        """Join the refresh under way in this process; start one if there is none or its answer is stale."""
        if account_id in self._refreshes:
            self._metrics.coalesced_waiters.inc()
            issued = await self._refreshes.join(account_id)
            if issued.refreshed or _valid_until(issued.expires_at) >= want.min_valid_for:
                return issued
        return await self._refreshes.start(account_id, lambda: self._refresh_locked(account_id, want))

    async def _write_unsaved(self, account_id: uuid.UUID) -> None:
        """The unsaved-pair writer's retry: a refresh finds the held pair and stores it (see below)."""
        await self._coalesced(account_id, _Want(timedelta(0), trigger="recovery"))

    async def _refresh_locked(self, account_id: uuid.UUID, want: _Want) -> IssuedToken:
        async with self._sessionmaker() as session:
            started = time.perf_counter()
            try:
                account = await lock_row(session, account_id, self._lock_timeout_ms)
            except DBAPIError as exc:
                if not is_lock_timeout(exc):
                    raise
                await session.rollback()
                log.warning("token.refresh.lock_timeout", account_id=str(account_id))
                return await self._after_lock_timeout(account_id, want)
            finally:
                self._metrics.lock_wait_seconds.observe(time.perf_counter() - started)
            if account is None:
                raise AccountNotFound("No such account.")
            return await self._refresh_holding_lock(session, account, want)

    async def _after_lock_timeout(self, account_id: uuid.UUID, want: _Want) -> IssuedToken:
        account = await self._reads.read(account_id)
        _ensure_active(account)
        if self._usable_for(account) >= want.min_valid_for and not want.force:
            return issue(self._vault, account, refreshed=False)
        raise AllegroUnavailableProblem(1.0, "A refresh of this account is taking too long; retry shortly.")

    # -- the refresh itself (row lock held) -------------------------------------------------------

    async def _refresh_holding_lock(
        self, session: AsyncSession, account: Account, want: _Want
    ) -> IssuedToken:
        now = utcnow()
        _ensure_active(account, now)
        unsaved = self._pairs.take_unsaved(account.id)
        if unsaved is not None and unsaved.base_version == account.token_version:
            # A pair Allegro issued that we could not store earlier: store it now, do not refresh again.
            self._pairs.apply(account, unsaved.tokens, unsaved.refreshed_at, forced=unsaved.forced)
            issued = issue(self._vault, account, refreshed=True)  # first: a failed commit expires `account`
            await self._pairs.commit(session, account, unsaved)
            return issued
        if self._already_done(account, want, now):
            await release(session, account)
            return issue(self._vault, account, refreshed=account.token_version != want.seen_version)

        if (wait := max(self.outage.remaining(), self.credentials.remaining())) > 0:
            await release(session, account)
            return self._fallback(account, want, wait)
        base = account.token_version
        # A marker already there is an earlier refresh that may have rotated and lost its pair: it
        # stays as it is (older, so the stored access token counts as dead sooner, never later), and
        # no answer of ours may clear it.
        marked_before = account.refresh_started_at is not None
        if not marked_before:
            await mark_refreshing(session, account)
            try:
                relocked = await lock_row(session, account.id, self._lock_timeout_ms)
            except DBAPIError as exc:
                if not is_lock_timeout(exc):
                    raise
                await session.rollback()
                return await self._after_lock_timeout(account.id, want)
            if relocked is None:
                raise AccountNotFound("No such account.")
            account = relocked
            _ensure_active(account, now)
            if account.token_version != base:
                # Another replica stored a pair while the row was unlocked for the marker's commit.
                await release(session, account)
                return issue(self._vault, account, refreshed=True)
        assert account.refresh_token_ciphertext is not None  # noqa: S101 - active accounts hold one
        refresh_token = self._vault.open(
            Account.refresh_token_ciphertext, account.id, account.refresh_token_ciphertext
        )
        try:
            async with asyncio.timeout(self._deadline):
                tokens = await self._allegro.refresh(refresh_token)
        except (AllegroUnavailable, TimeoutError) as exc:
            retry_after = exc.retry_after if isinstance(exc, AllegroUnavailable) else None
            status = getattr(exc, "status", None)
            self.outage.record_failure(retry_after)
            self._metrics.refreshes.labels("unavailable", want.trigger).inc()
            log.warning("token.refresh.unavailable", account_id=str(account.id), status=status)
            # A 429 refused the call before any rotation. Anything else (a timeout, a reset, a 5xx, a
            # truncated answer) may have rotated: the marker stays, and once it is older than the
            # deadline nobody hands out the stored access token any more.
            await release(session, account, clear_marker=status == 429 and not marked_before)
            return self._fallback(account, want, retry_after or DEFAULT_RETRY_AFTER)
        except AllegroRejected as exc:
            await release(session, account, clear_marker=not marked_before)  # refused: nothing rotated
            return await self._rejected(account.id, account.token_version, exc, want)

        self.outage.record_success()
        forced = want.trigger == "forced"
        self._pairs.apply(account, tokens, now, forced=forced)
        # Built before the commit: a commit that fails on a dead connection expires `account`, and its
        # attributes can then no longer be read (the commit's retries use values it captured first).
        issued = issue(self._vault, account, refreshed=True)
        await self._pairs.commit(session, account, UnsavedPair(tokens, base, now, forced))
        self._metrics.refreshes.labels("refreshed", want.trigger).inc()
        log.info(
            "token.refreshed",
            account_id=str(issued.account_id),
            version=issued.token_version,
            trigger=want.trigger,
        )
        return issued

    def _already_done(self, account: Account, want: _Want, now: datetime) -> bool:
        """True when the row, re-read under the lock, already satisfies the caller."""
        if want.trigger == "keepalive":
            return False  # refresh_if_due checked, under this same lock, that the account is due
        if want.force:
            if want.seen_version is not None and account.token_version != want.seen_version:
                return True  # another caller refreshed since this one read the rejected token
            # Forced refreshes are limited to one per 10 s: inside that window, answer with the last
            # one's pair. Only a pair a forced refresh issued counts (a link's, a re-login's, a due
            # refresh's or the keep-alive's is refreshed at once), and only while no refresh since may
            # have killed it.
            return (
                account.forced_token_version == account.token_version
                and account.last_refreshed_at is not None
                and now - account.last_refreshed_at < FORCED_REFRESH_INTERVAL
                and not self._marker_expired(account, now)
            )
        return self._usable_for(account, now) >= want.min_valid_for

    def _fallback(self, account: Account, want: _Want, retry_after: float) -> IssuedToken:
        if (
            account.access_token_ciphertext is not None
            and self._usable_for(account) >= SERVE_DURING_OUTAGE_MIN
        ):
            return issue(self._vault, account, refreshed=False)
        raise AllegroUnavailableProblem(retry_after)

    async def _rejected(
        self, account_id: uuid.UUID, used_version: int, exc: AllegroRejected, want: _Want
    ) -> IssuedToken:
        if exc.refuses_account:
            try:
                credentials_ok = await self.credentials.credentials_valid()
            except AllegroUnavailable as probe_failure:
                self._metrics.refreshes.labels("unavailable", want.trigger).inc()
                return await self._serve_or_503(
                    account_id, want, probe_failure.retry_after or DEFAULT_RETRY_AFTER
                )
            if not credentials_ok:
                # Our client secret is broken: every account would get 401. Flag none of them.
                log.error("allegro.client_credentials_rejected")
                self._metrics.refreshes.labels("client_unauthorized", want.trigger).inc()
                return await self._serve_or_503(account_id, want, self.credentials.remaining())
        elif not exc.is_invalid_grant:
            # Some other 4xx (a malformed request on our side): not the account's fault.
            self._metrics.refreshes.labels("unavailable", want.trigger).inc()
            return await self._serve_or_503(account_id, want, DEFAULT_RETRY_AFTER)

        def reason_for(account: Account) -> ReloginReason:
            if exc.refuses_account:
                return ReloginReason.GRANT_REVOKED
            expires_at = account.refresh_token_expires_at
            if expires_at is not None and expires_at <= utcnow():
                return ReloginReason.REFRESH_TOKEN_EXPIRED
            return ReloginReason.REFRESH_REJECTED

        flagged = await require_relogin(self._sessionmaker, account_id, used_version, reason_for)
        if isinstance(flagged, Account):
            # Another writer rotated the token between our read and Allegro's answer: its pair is the
            # live one, and the refusal only concerned the token it replaced.
            return issue(self._vault, flagged, refreshed=True)
        reason = flagged
        self._metrics.refreshes.labels("relogin_required", want.trigger).inc()
        log.warning(
            "token.refresh.rejected", account_id=str(account_id), reason=reason.value, status=exc.status
        )
        raise ReloginRequired(
            "Allegro no longer accepts this account's tokens; log it in again.",
            extra={"relogin_reason": reason.value},
        )

    async def _serve_or_503(self, account_id: uuid.UUID, want: _Want, retry_after: float) -> IssuedToken:
        return self._fallback(await self._reads.read(account_id), want, retry_after)

    # -- the stored token ----------------------------------------------------------------------------

    def _usable_for(self, account: Account, now: datetime | None = None) -> timedelta:
        """How long the stored access token is good for, as far as any replica can know."""
        now = now or utcnow()
        if self._marker_expired(account, now):
            return timedelta(0)
        return _valid_for(account, now)

    def _marker_expired(self, account: Account, now: datetime) -> bool:
        """True when a refresh started longer ago than its deadline has not stored its pair.

        It may have killed the stored access token (its replica lost the database, or died). A younger
        marker belongs to a refresh still under way, which stores its pair or gives up within the
        deadline, as it would have had it started just after this read.
        """
        started = account.refresh_started_at
        return started is not None and (now - started).total_seconds() > self._deadline


def _ensure_active(account: Account, now: datetime | None = None) -> None:
    view = effective_status(account, now or utcnow())
    if view.status is not AccountStatus.ACTIVE:
        raise ReloginRequired(
            "The account must be logged in again.",
            extra={"relogin_reason": view.reason.value if view.reason else None},
        )


def _valid_for(account: Account, now: datetime | None = None) -> timedelta:
    if account.access_token_expires_at is None or account.access_token_ciphertext is None:
        return timedelta(0)
    return account.access_token_expires_at - (now or utcnow())


def _valid_until(expires_at: datetime) -> timedelta:
    return expires_at - utcnow()
