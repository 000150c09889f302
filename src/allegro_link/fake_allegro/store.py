"""The fake's whole state: clients, users, browser sessions, codes, token sessions, faults, counters.

One `FakeStore` per app instance. Every public method takes `_lock` for its whole body and never
awaits, so each check-then-act (consume a code, rotate a refresh token, enforce the 20-session cap)
is atomic for the event loop and also for a test thread that pokes the store directly. That is why
this is a threading lock and not an asyncio.Lock: no critical section spans an await. Nothing that
sleeps (faults) runs under the lock. It stays one module, a little past the usual ~400 lines, so that
everything the lock guards is in view together.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import secrets
import threading
from collections.abc import Sequence

from allegro_link.fake_allegro.config import FakeAllegroConfig, FakeClient
from allegro_link.fake_allegro.faults import Fault, FaultEndpoint, FaultQueue
from allegro_link.fake_allegro.models import (
    AccessCheck,
    AccessRecord,
    AuthCode,
    ExpireWhat,
    InvalidGrant,
    IssuedTokens,
    RefreshRecord,
    Stats,
    TokenSession,
    Unauthorized,
    User,
    UserConflict,
)
from allegro_link.fake_allegro.pkce import verifier_matches
from allegro_link.fake_allegro.tokens import TokenSigner

_LOGIN_RE = re.compile(r"^[^\s\x00-\x1f]{1,64}$")
_EMAIL_LOCAL_RE = re.compile(r"[^a-z0-9._-]")


class FakeStore:
    def __init__(self, config: FakeAllegroConfig, signer: TokenSigner) -> None:
        self._config = config
        self._signer = signer
        self._lock = threading.Lock()
        self._gates: list[threading.Event] = []  # of the `hold` faults not released yet
        self._reset()

    def _reset(self) -> None:
        self._clock_offset = 0.0
        self._clients: dict[str, FakeClient] = {client.client_id: client for client in self._config.clients}
        self._users: dict[str, User] = {}
        self._user_ids_by_login: dict[str, str] = {}  # casefolded login -> id: logins ignore case
        self._browser_sessions: dict[str, str] = {}  # cookie value -> user id
        self._codes: dict[str, AuthCode] = {}
        self._sessions: dict[int, TokenSession] = {}
        self._access: dict[str, AccessRecord] = {}
        self._refresh: dict[str, RefreshRecord] = {}
        self._ids = itertools.count(1)
        self._faults = FaultQueue()
        self._release_held()
        self._stats = Stats()

    def reset(self) -> None:
        """Back to the state right after start: the configured clients only, nothing else."""
        with self._lock:
            self._reset()

    # Clock

    def now(self) -> float:
        with self._lock:
            return self._now()

    def _now(self) -> float:
        return self._config.clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> float:
        with self._lock:
            self._clock_offset += seconds
            return self._now()

    # Clients

    def client(self, client_id: str) -> FakeClient | None:
        with self._lock:
            return self._clients.get(client_id)

    def register_client(self, client: FakeClient) -> None:
        with self._lock:
            self._clients[client.client_id] = client

    def authenticate_client(self, client_id: str, client_secret: str) -> FakeClient | None:
        with self._lock:
            client = self._clients.get(client_id)
        if client is None or not hmac.compare_digest(client.client_secret.encode(), client_secret.encode()):
            return None
        return client

    # Users and browser sessions

    def create_user(
        self,
        login: str,
        *,
        user_id: str | None = None,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        company_name: str | None = None,
        company_tax_id: str | None = None,
        features: Sequence[str] = (),
    ) -> tuple[User, bool]:
        """The user with this login, created if new. Returns (user, created)."""
        if not _LOGIN_RE.match(login):
            raise UserConflict("a login is 1 to 64 characters without spaces")
        with self._lock:
            existing = self._user_by_login(login)
            if existing is not None:
                if user_id is not None and user_id != existing.id:
                    raise UserConflict(f"login {existing.login!r} already has id {existing.id}")
                return existing, False
            if user_id is not None and user_id in self._users:
                raise UserConflict(f"id {user_id} belongs to {self._users[user_id].login!r}")
            user = User(
                id=user_id or self._stable_user_id(login),
                login=login,
                email=email or _default_email(login),
                company_name=company_name,
                company_tax_id=company_tax_id,
                features=list(features),
            )
            if first_name is not None:
                user.first_name = first_name
            if last_name is not None:
                user.last_name = last_name
            self._users[user.id] = user
            self._user_ids_by_login[login.casefold()] = user.id
            return user, True

    def user_by_login(self, login: str) -> User | None:
        with self._lock:
            return self._user_by_login(login)

    def _user_by_login(self, login: str) -> User | None:
        user_id = self._user_ids_by_login.get(login.casefold())
        return self._users[user_id] if user_id is not None else None

    def sign_in(self, login_or_email: str) -> User:
        """The login form: an e-mail of a known user logs in as that user; anything else is a login."""
        with self._lock:
            wanted = login_or_email.casefold()
            if "@" in wanted:
                for user in self._users.values():
                    if user.email.casefold() == wanted:
                        return user
        return self.create_user(login_or_email)[0]

    def _stable_user_id(self, login: str) -> str:
        # Derived from the login so that a restarted fake gives a known login its old id again,
        # and the broker's linked accounts still match.
        digest = hashlib.sha256(login.casefold().encode()).digest()
        candidate = 10_000_000 + int.from_bytes(digest[:8], "big") % 90_000_000
        while str(candidate) in self._users:
            candidate += 1
        return str(candidate)

    def start_browser_session(self, user: User) -> str:
        cookie = secrets.token_urlsafe(24)
        with self._lock:
            self._browser_sessions[cookie] = user.id
        return cookie

    def browser_user(self, cookie: str | None) -> User | None:
        if not cookie:
            return None
        with self._lock:
            user_id = self._browser_sessions.get(cookie)
            return self._users.get(user_id) if user_id is not None else None

    def end_browser_session(self, cookie: str | None) -> None:
        with self._lock:
            self._browser_sessions.pop(cookie or "", None)

    # Codes and the token endpoint

    def issue_code(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        user: User,
        scopes: tuple[str, ...],
        code_challenge: str | None,
    ) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = AuthCode(
                client_id=client_id,
                redirect_uri=redirect_uri,
                user_id=user.id,
                scopes=scopes,
                code_challenge=code_challenge,
                expires_at=self._now() + self._config.code_ttl,
            )
        return code

    def exchange_code(
        self, *, client_id: str, code: str, redirect_uri: str | None, code_verifier: str | None, public: bool
    ) -> IssuedTokens:
        """Trade a code for tokens. `public`: the client sent no secret, so PKCE is its only proof."""
        invalid_code = InvalidGrant(f"Invalid authorization code: {code}")
        with self._lock:
            now = self._now()
            record = self._codes.get(code)
            if record is None or record.client_id != client_id:
                raise invalid_code
            if public and record.code_challenge is None:
                raise Unauthorized("a code without PKCE needs the client secret")
            if record.used:
                # A replayed code may mean it was stolen: kill what it minted (RFC 6749, 4.1.2).
                if record.session_id is not None:
                    self._sessions[record.session_id].killed = True
                raise invalid_code
            # Any presentation burns the code, even one that fails below, like Spring's code store.
            record.used = True
            if now >= record.expires_at:
                raise invalid_code
            if redirect_uri != record.redirect_uri:
                raise InvalidGrant("Redirect URI mismatch.")
            if record.code_challenge is not None and not verifier_matches(
                code_verifier, record.code_challenge
            ):
                raise InvalidGrant("Invalid code verifier.")
            session = TokenSession(
                id=next(self._ids), user_id=record.user_id, client_id=client_id, scopes=record.scopes
            )
            self._sessions[session.id] = session
            record.session_id = session.id
            return self._mint(session, now)

    def refresh(self, *, client_id: str, refresh_token: str) -> IssuedTokens:
        invalid = InvalidGrant(f"Invalid refresh token: {refresh_token}")
        with self._lock:
            now = self._now()
            jti = self._signer.jti_of(refresh_token)
            record = self._refresh.get(jti) if jti is not None else None
            if record is None:
                raise invalid
            session = self._sessions[record.session_id]
            if session.client_id != client_id:
                raise invalid
            if session.revoked:
                raise Unauthorized("grant revoked")
            if session.killed or now >= record.expires_at:
                raise invalid
            if record.first_used_at is None:
                record.first_used_at = now
            elif now - record.first_used_at > self._config.refresh_grace:
                raise invalid
            # "dezaktywując dotychczasowego": the session's live access token dies with every refresh,
            # also one made in the grace window with the previous refresh token.
            previous = self._access.get(session.current_access_jti)
            if previous is not None:
                previous.killed = True
            return self._mint(session, now)

    def _mint(self, session: TokenSession, now: float) -> IssuedTokens:
        config = self._config
        access = self._signer.access_token(
            user_id=session.user_id,
            client_id=session.client_id,
            scopes=session.scopes,
            expires_at=now + config.access_token_ttl,
        )
        refresh = self._signer.refresh_token(
            user_id=session.user_id,
            client_id=session.client_id,
            scopes=session.scopes,
            expires_at=now + config.refresh_token_ttl,
            access_jti=access.jti,
        )
        self._access[access.jti] = AccessRecord(session.id, now + config.access_token_ttl, next(self._ids))
        self._refresh[refresh.jti] = RefreshRecord(session.id, now + config.refresh_token_ttl)
        session.current_access_jti = access.jti
        session.access_jtis.append(access.jti)
        session.refresh_jtis.append(refresh.jti)
        self._enforce_session_cap(session, now)
        return IssuedTokens(
            access_token=access.token,
            refresh_token=refresh.token,
            jti=access.jti,
            scopes=session.scopes,
            expires_in=config.access_token_ttl - 1,
        )

    def _enforce_session_cap(self, minted: TokenSession, now: float) -> None:
        # Only unexpired access tokens count: the limit "decreases as the issued tokens expire".
        active: list[tuple[int, TokenSession]] = []
        for session in self._sessions.values():
            if session.dead or session.user_id != minted.user_id or session.client_id != minted.client_id:
                continue
            access = self._access.get(session.current_access_jti)
            if access is not None and not access.killed and now < access.expires_at:
                active.append((access.sequence, session))
        active.sort(key=lambda item: item[0])
        # Going over the cap ends the oldest session, refresh token included (docs/allegro.md).
        for _, session in active[: max(0, len(active) - self._config.max_active_access_tokens)]:
            session.killed = True

    # The API side

    def check_access_token(self, token: str) -> AccessCheck:
        with self._lock:
            jti = self._signer.jti_of(token)
            if jti is None:
                return AccessCheck("malformed")
            record = self._access.get(jti)
            if record is None or record.killed or self._sessions[record.session_id].dead:
                return AccessCheck("invalid")
            if self._now() >= record.expires_at:
                return AccessCheck("expired")
            session = self._sessions[record.session_id]
            return AccessCheck("ok", self._users[session.user_id], session.scopes)

    # Test controls

    def revoke(self, user: User, client_id: str | None = None) -> int:
        """The user removes the app in "Powiązane aplikacje". Returns how many sessions it ended."""
        with self._lock:
            ended = 0
            for session in self._sessions.values():
                if (
                    session.user_id == user.id
                    and client_id in (None, session.client_id)
                    and not session.revoked
                ):
                    session.revoked = True
                    ended += 1
            return ended

    def expire(self, user: User, what: ExpireWhat) -> dict[str, int]:
        """Make the user's unexpired tokens expire now, as if their lifetime had run out."""
        with self._lock:
            now = self._now()
            counts = {"access": 0, "refresh": 0}
            for session in self._sessions.values():
                if session.user_id != user.id:
                    continue
                records: list[AccessRecord | RefreshRecord] = []
                if what in ("access", "both"):
                    records += [self._access[jti] for jti in session.access_jtis]
                if what in ("refresh", "both"):
                    records += [self._refresh[jti] for jti in session.refresh_jtis]
                for record in records:
                    if record.expires_at > now:
                        record.expires_at = now
                        counts["access" if isinstance(record, AccessRecord) else "refresh"] += 1
            return counts

    def add_fault(self, endpoint: FaultEndpoint, fault: Fault) -> dict[str, list[dict[str, object]]]:
        with self._lock:
            self._faults.add(endpoint, fault)
            if fault.gate is not None:
                self._gates.append(fault.gate)
            return self._faults.pending()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = FaultQueue()
            self._release_held()

    def release_held(self) -> None:
        """Calls held by `hold` faults go on, and so will the later calls those faults hold."""
        with self._lock:
            self._release_held()

    def _release_held(self) -> None:
        for gate in self._gates:
            gate.set()
        self._gates = []

    def take_fault(self, endpoint: FaultEndpoint) -> Fault | None:
        with self._lock:
            return self._faults.take(endpoint)

    def count_token_call(self, grant_type: str | None, refresh_token: str | None) -> None:
        with self._lock:
            self._stats.token_calls[grant_type or "(none)"] += 1
            if grant_type == "refresh_token" and refresh_token:
                jti = self._signer.jti_of(refresh_token)
                record = self._refresh.get(jti) if jti is not None else None
                if record is not None:
                    login = self._users[self._sessions[record.session_id].user_id].login
                    self._stats.refresh_by_user[login] += 1

    def count_me_call(self) -> None:
        with self._lock:
            self._stats.me_calls += 1

    def count_me_use(self, login: str) -> None:
        with self._lock:
            self._stats.me_by_user[login] += 1

    def stats(self) -> dict[str, object]:
        with self._lock:
            return self._stats.as_json()


def _default_email(login: str) -> str:
    if "@" in login:
        return login
    local = _EMAIL_LOCAL_RE.sub("-", login.casefold()).strip(".-") or "user"
    return f"{local}@example.com"
