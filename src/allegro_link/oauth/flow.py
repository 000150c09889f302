"""The authorization-code flow: start a link, take Allegro's callback, complete it for the owner.

1. `start_link`: a link session row holds the SHA-256 of a random `state`, the owner, the account to
   re-login (if any), the checked `return_to` and the encrypted PKCE verifier. An owner has at most
   `max_pending_per_owner` states waiting for their callback; starting one more deletes the oldest, whose
   callback then meets an unknown state (400, like any state we cannot honour: nothing is stored and
   Allegro is not called). Expiring it instead would keep a row per start, which is what the cap prevents.
2. `handle_callback`: the browser comes back from Allegro. The state is consumed in its own committed
   transaction *before* Allegro is called, so a replayed or concurrent callback finds it used; the code
   is exchanged at once (it lives 10 s) and never retried; `/me` names the Allegro user. The tokens
   wait, encrypted, in the link session; the browser gets an opaque `link_session` id.
3. `complete_link`: the owner's frontend presents that id with the owner's JWT. Only the owner who
   started the flow can complete it (RFC 9700 §2.1: bind the result to the user agent that began it);
   anyone else destroys it. Then the account is created, or the existing one is re-linked.

Each step is a short transaction of its own (no transaction is held open across a call to Allegro).
The three steps stay in one module, past the usual ~400 lines, because they share the link session's
life cycle: when its held tokens may be read and when they are discarded is checked in one place.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

import structlog
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.accounts import transitions
from allegro_link.accounts.models import Account
from allegro_link.accounts.service import get_account
from allegro_link.allegro.client import (
    AllegroClient,
    AllegroRejected,
    AllegroUnavailable,
    AllegroUser,
    TokenSet,
)
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import is_lock_timeout, utcnow, uuid7
from allegro_link.errors import BadRequest, Conflict, NotFound, Problem
from allegro_link.oauth.models import LinkSession
from allegro_link.oauth.return_to import ReturnToPolicy, with_query

log = structlog.get_logger(__name__)

# Expired states are remembered this long so that a late callback answers state_expired, not 400.
EXPIRED_STATE_MEMORY = timedelta(hours=24)
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# First key of the two-key advisory lock that serialises one owner's starts (the second is the owner).
_START_LOCK_SPACE = 0x616C6B31  # "alk1"
# A start holds that lock for milliseconds; waiting longer means one owner is flooding, and its waiting
# requests must not hold pooled connections for the whole statement timeout.
START_LOCK_TIMEOUT_MS = 2000


class CallbackOutcome(StrEnum):
    COMPLETE = "complete"
    ACCESS_DENIED = "access_denied"
    STATE_EXPIRED = "state_expired"
    ALLEGRO_UNAVAILABLE = "allegro_unavailable"
    EXCHANGE_REJECTED = "exchange_rejected"
    ALLEGRO_ERROR = "allegro_error"


class InvalidState(BadRequest):
    code = "invalid_state"
    title = "Invalid state"


class LinkSessionNotFound(NotFound):
    code = "not_found"
    title = "Link session not found"


class TooManyLinkStarts(Problem):
    status = 429
    code = "too_many_link_starts"
    title = "Too many links started at once"


class AccountMismatch(Conflict):
    code = "account_mismatch"
    title = "Logged in as a different Allegro account"


@dataclass(frozen=True, slots=True)
class StartedLink:
    authorization_url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CallbackParams:
    state: str
    code: str | None
    error: str | None


LinkResult = Literal["linked", "relinked"]


@dataclass(frozen=True, slots=True)
class CompletedLink:
    result: LinkResult
    account: Account


@dataclass(frozen=True, slots=True)
class _ClaimedState:
    """A link session whose state the callback has just used up (committed)."""

    link_id: uuid.UUID
    return_to: str
    # None when the state had expired: its verifier was dropped with it.
    verifier_ciphertext: bytes | None
    # Set when the callback ends here (STATE_EXPIRED); None when it goes on to Allegro.
    outcome: CallbackOutcome | None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class LinkFlow:
    """The three steps of linking; which transaction each one writes in:

    - `start_link` runs in the request's session (the route's unit of work commits the link session).
    - `handle_callback` takes no session: it opens its own short transactions, one to claim the state
      (committed before Allegro is called) and one to store the outcome or the tokens afterwards, so
      that none is held open across the calls to Allegro.
    - `complete_link` opens its own session too: a refusal (a foreign owner, an expired link session,
      an account mismatch) commits what it changed (the discarded tokens, the mismatch event) before it
      raises, which the request's unit of work would roll back; and a lost race to create the account
      is retried in a fresh transaction.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        allegro: AllegroClient,
        vault: TokenVault,
        return_to_policy: ReturnToPolicy,
        *,
        state_ttl: timedelta,
        completion_ttl: timedelta,
        max_pending_per_owner: int,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._allegro = allegro
        self._vault = vault
        self._return_to = return_to_policy
        self._state_ttl = state_ttl
        self._completion_ttl = completion_ttl
        self._max_pending = max_pending_per_owner

    # -- 1. start ---------------------------------------------------------------------------------

    async def start_link(
        self, session: AsyncSession, *, owner_id: str, return_to: str, account_id: uuid.UUID | None = None
    ) -> StartedLink:
        checked_return_to = self._return_to.check(return_to)
        if account_id is not None:
            # 404 for another owner's account. Locked until this transaction commits, so that a delete
            # running meanwhile either finishes first (404 here) or waits and then cascades to the new
            # link session, instead of failing our insert on its foreign key (a 500).
            await get_account(session, account_id, owner_id, for_update=True)
        now = utcnow()
        await self._make_room(session, owner_id, now)
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters, within PKCE's 43-128
        link = LinkSession(
            id=uuid7(),
            state_hash=_digest(state),
            owner_id=owner_id,
            account_id=account_id,
            return_to=checked_return_to,
            created_at=now,
            expires_at=now + self._state_ttl,
        )
        link.code_verifier_ciphertext = self._vault.seal(
            LinkSession.code_verifier_ciphertext, link.id, verifier
        )
        session.add(link)
        url = self._allegro.authorization_url(
            state=state, code_challenge=create_s256_code_challenge(verifier)
        )
        log.info("link.started", link_session_id=str(link.id), relogin=account_id is not None)
        return StartedLink(authorization_url=url, expires_at=link.expires_at)

    async def _make_room(self, session: AsyncSession, owner_id: str, now: datetime) -> None:
        """Delete the owner's oldest pending states so that the one being started fits under the cap."""
        # Held until the request's transaction ends: concurrent starts of one owner count one by one,
        # so a burst cannot leave more than the cap behind.
        await session.execute(text(f"SET LOCAL lock_timeout = {START_LOCK_TIMEOUT_MS}"))
        try:
            await session.execute(
                select(func.pg_advisory_xact_lock(_START_LOCK_SPACE, func.hashtext(owner_id)))
            )
        except DBAPIError as exc:
            if not is_lock_timeout(exc):
                raise
            log.warning("link.start.busy")
            raise TooManyLinkStarts(
                "Too many links are being started for this owner at once; retry shortly.",
                headers={"Retry-After": "1"},
            ) from None
        await session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
        beyond_cap = (
            select(LinkSession.id)
            .where(
                LinkSession.owner_id == owner_id,
                LinkSession.callback_at.is_(None),
                LinkSession.expires_at > now,
            )
            .order_by(LinkSession.created_at.desc(), LinkSession.id.desc())
            .offset(self._max_pending - 1)
        )
        evicted = await session.execute(delete(LinkSession).where(LinkSession.id.in_(beyond_cap)))
        count = int(getattr(evicted, "rowcount", 0) or 0)
        if count:
            log.info("link.evicted", count=count, max_pending=self._max_pending)

    # -- 2. callback ------------------------------------------------------------------------------

    async def handle_callback(self, params: CallbackParams) -> str:
        """The URL to send the browser to. Raises `InvalidState` (400) for states we cannot honour."""
        if not _TOKEN_SHAPE.match(params.state):
            raise InvalidState("The state is malformed.")
        if params.code is None and params.error is None:
            raise InvalidState("The callback carries neither a code nor an error.")

        claimed = await self._claim_state(params.state)
        link_id, return_to, verifier_blob = claimed.link_id, claimed.return_to, claimed.verifier_ciphertext
        if claimed.outcome is not None:
            return _error_redirect(return_to, claimed.outcome)
        if params.error is not None:
            # Allegro (or the user) said no; a code next to an error is ignored, never exchanged.
            outcome = (
                CallbackOutcome.ACCESS_DENIED
                if params.error == "access_denied"
                else CallbackOutcome.ALLEGRO_ERROR
            )
            await self._record_outcome(link_id, outcome)
            return _error_redirect(return_to, outcome)

        assert params.code is not None  # noqa: S101 - checked above
        assert verifier_blob is not None  # noqa: S101 - every link session has one
        verifier = self._vault.open(LinkSession.code_verifier_ciphertext, link_id, verifier_blob)
        try:
            tokens = await self._allegro.exchange_code(params.code, verifier)
            user = await self._allegro.me(tokens.access_token)
        except AllegroUnavailable as exc:
            log.warning("link.callback.allegro_unavailable", operation=exc.operation, status=exc.status)
            await self._record_outcome(link_id, CallbackOutcome.ALLEGRO_UNAVAILABLE)
            return _error_redirect(return_to, CallbackOutcome.ALLEGRO_UNAVAILABLE)
        except AllegroRejected as exc:
            log.warning("link.callback.rejected", operation=exc.operation, status=exc.status, error=exc.error)
            await self._record_outcome(link_id, CallbackOutcome.EXCHANGE_REJECTED)
            return _error_redirect(return_to, CallbackOutcome.EXCHANGE_REJECTED)

        completion = secrets.token_urlsafe(32)
        await self._hold_result(link_id, tokens, user, completion)
        log.info("link.callback.exchanged", link_session_id=str(link_id))
        return with_query(return_to, {"allegro_link": "complete", "link_session": completion})

    async def _claim_state(self, state: str) -> _ClaimedState:
        """Mark the state used, in a transaction committed before anything else happens."""
        async with self._sessionmaker.begin() as session:
            link = (
                await session.execute(
                    select(LinkSession).where(LinkSession.state_hash == _digest(state)).with_for_update()
                )
            ).scalar_one_or_none()
            if link is None:
                raise InvalidState("Unknown state.")
            now = utcnow()
            if link.callback_at is not None:
                if link.outcome == CallbackOutcome.STATE_EXPIRED:
                    return _ClaimedState(link.id, link.return_to, None, CallbackOutcome.STATE_EXPIRED)
                raise InvalidState("This state has already been used.")
            link.callback_at = now
            if now >= link.expires_at:
                link.outcome = CallbackOutcome.STATE_EXPIRED
                link.code_verifier_ciphertext = None
                return _ClaimedState(link.id, link.return_to, None, CallbackOutcome.STATE_EXPIRED)
            return _ClaimedState(link.id, link.return_to, link.code_verifier_ciphertext, None)

    async def _record_outcome(self, link_id: uuid.UUID, outcome: CallbackOutcome) -> None:
        async with self._sessionmaker.begin() as session:
            link = await session.get(LinkSession, link_id, with_for_update=True)
            if link is not None:
                link.outcome = outcome
                link.code_verifier_ciphertext = None

    async def _hold_result(
        self, link_id: uuid.UUID, tokens: TokenSet, user: AllegroUser, completion: str
    ) -> None:
        async with self._sessionmaker.begin() as session:
            link = await session.get(LinkSession, link_id, with_for_update=True)
            if link is None:  # the account being re-linked was deleted meanwhile (cascade)
                return
            link.outcome = CallbackOutcome.COMPLETE
            link.code_verifier_ciphertext = None
            link.completion_hash = _digest(completion)
            link.completion_expires_at = utcnow() + self._completion_ttl
            link.allegro_user_id = user.id
            link.login = user.login
            link.access_token_ciphertext = self._vault.seal(
                LinkSession.access_token_ciphertext, link.id, tokens.access_token
            )
            link.access_token_expires_at = tokens.access_expires_at
            link.refresh_token_ciphertext = self._vault.seal(
                LinkSession.refresh_token_ciphertext, link.id, tokens.refresh_token
            )
            link.refresh_token_expires_at = tokens.refresh_expires_at
            link.scope = tokens.scope

    # -- 3. completion ----------------------------------------------------------------------------

    async def complete_link(self, *, owner_id: str, link_session: str, actor: str) -> CompletedLink:
        if not _TOKEN_SHAPE.match(link_session):
            raise LinkSessionNotFound("No such link session.")
        for attempt in range(2):
            async with self._sessionmaker() as session:
                try:
                    completed = await self._complete(session, owner_id, link_session, actor)
                except (AccountMismatch, LinkSessionNotFound):
                    # The held tokens are discarded for good on these outcomes: commit that, then answer.
                    await session.commit()
                    raise
                except IntegrityError:
                    # A concurrent completion created the same (owner, Allegro user) account first;
                    # the second attempt finds it and re-links it instead of making a duplicate.
                    await session.rollback()
                    if attempt:
                        raise
                    continue
                except BaseException:
                    await session.rollback()
                    raise
                await session.commit()
                return completed
        raise AssertionError("unreachable")

    async def _complete(
        self, session: AsyncSession, owner_id: str, link_session: str, actor: str
    ) -> CompletedLink:
        link = (
            await session.execute(
                select(LinkSession)
                .where(LinkSession.completion_hash == _digest(link_session))
                .with_for_update()
            )
        ).scalar_one_or_none()
        if link is None or link.completed_at is not None:
            raise LinkSessionNotFound("No such link session.")
        now = utcnow()
        if link.owner_id != owner_id:
            _discard(link, now)
            log.warning("link.complete.foreign_owner", link_session_id=str(link.id))
            raise LinkSessionNotFound("No such link session.")
        if link.completion_expires_at is None or now >= link.completion_expires_at:
            _discard(link, now)
            raise LinkSessionNotFound("The link session has expired; start again.")

        assert link.allegro_user_id is not None  # noqa: S101 - set with the tokens
        assert link.login is not None  # noqa: S101 - set with the tokens
        if link.account_id is not None:
            account = await get_account(session, link.account_id, owner_id, for_update=True)
            if not _same_allegro_user(account, link):
                expected = account.login
                _discard(link, now)
                await transitions.relink_mismatch(session, account, actual_login=link.login, actor=actor)
                raise AccountMismatch(
                    f"Account {expected} was logged in again as {link.login}; use 'Zmień konto' at Allegro.",
                    extra={"expected_login": expected, "actual_login": link.login},
                )
            result: LinkResult = "relinked"
        else:
            existing = await _find_existing(session, owner_id, link.allegro_user_id, link.login)
            if existing is not None:
                account, result = existing, "relinked"
            else:
                account = transitions.new_linked_account(account_id=uuid7(), owner_id=owner_id, now=now)
                result = "linked"
        previous = transitions.relink_starting(account, now)
        self._move_tokens(link, account, now)
        _discard(link, now)
        if result == "linked":
            await transitions.linked(session, account, actor=actor)
        else:
            await transitions.relinked(session, account, previous, now=now, actor=actor)
        log.info("link.completed", account_id=str(account.id), result=result)
        return CompletedLink(result=result, account=account)

    def _move_tokens(self, link: LinkSession, account: Account, now: datetime) -> None:
        assert link.access_token_ciphertext is not None  # noqa: S101 - held since the callback
        assert link.refresh_token_ciphertext is not None  # noqa: S101 - held since the callback
        access = self._vault.open(LinkSession.access_token_ciphertext, link.id, link.access_token_ciphertext)
        refresh = self._vault.open(
            LinkSession.refresh_token_ciphertext, link.id, link.refresh_token_ciphertext
        )
        account.allegro_user_id = link.allegro_user_id
        account.login = link.login
        account.access_token_ciphertext = self._vault.seal(
            Account.access_token_ciphertext, account.id, access
        )
        account.access_token_expires_at = link.access_token_expires_at
        account.refresh_token_ciphertext = self._vault.seal(
            Account.refresh_token_ciphertext, account.id, refresh
        )
        account.refresh_token_expires_at = link.refresh_token_expires_at
        account.scope = link.scope
        account.token_version = (account.token_version or 0) + 1
        account.last_refreshed_at = now
        account.last_used_at = link.callback_at or now  # the callback's GET /me used the account
        if account.linked_at is None:
            account.linked_at = now


def _same_allegro_user(account: Account, link: LinkSession) -> bool:
    if account.allegro_user_id is not None:
        return account.allegro_user_id == link.allegro_user_id
    # A legacy account is known only by its login from the old system.
    return (account.login or "").casefold() == (link.login or "").casefold()


async def _find_existing(
    session: AsyncSession, owner_id: str, allegro_user_id: str, login: str
) -> Account | None:
    by_user = (
        await session.execute(
            select(Account)
            .where(Account.owner_id == owner_id, Account.allegro_user_id == allegro_user_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if by_user is not None:
        return by_user
    return (
        await session.execute(
            select(Account)
            .where(
                Account.owner_id == owner_id,
                Account.allegro_user_id.is_(None),
                func.lower(Account.login) == login.lower(),
            )
            .with_for_update()
        )
    ).scalar_one_or_none()


def _discard(link: LinkSession, now: datetime) -> None:
    link.completed_at = now
    link.access_token_ciphertext = None
    link.refresh_token_ciphertext = None
    link.access_token_expires_at = None
    link.refresh_token_expires_at = None
    link.code_verifier_ciphertext = None


def _error_redirect(return_to: str, outcome: CallbackOutcome) -> str:
    return with_query(return_to, {"allegro_link": "error", "error": outcome.value})
