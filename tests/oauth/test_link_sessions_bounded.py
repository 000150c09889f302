"""Link sessions cannot pile up: a cap on pending states per owner, and a prompt purge."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.app import create_app
from allegro_link.db import create_engine, create_sessionmaker, utcnow
from allegro_link.oauth.models import LinkSession
from allegro_link.oauth.purge import purge_link_sessions
from allegro_link.settings import Settings
from tests.support.factories import bearer, owner_token
from tests.support.link import RETURN_TO, returned_params
from tests.support.live import lifespan

DEFAULT_CAP = 20


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _start(client: httpx.AsyncClient, owner: str) -> str:
    """Starts a link; returns its state."""
    response = await client.post(
        "/accounts/authorize", json={"return_to": RETURN_TO}, headers=bearer(owner_token(owner))
    )
    assert response.status_code == 201, response.text
    url: str = response.json()["authorization_url"]
    return parse_qs(urlsplit(url).query)["state"][0]


async def _rows(db: async_sessionmaker[AsyncSession], owner: str | None = None) -> list[LinkSession]:
    query = select(LinkSession).order_by(LinkSession.created_at)
    if owner is not None:
        query = query.where(LinkSession.owner_id == owner)
    async with db() as session:
        return list((await session.scalars(query)).all())


def _hash(state: str) -> bytes:
    return hashlib.sha256(state.encode()).digest()


async def _set(db: async_sessionmaker[AsyncSession], state: str, **values: object) -> None:
    async with db.begin() as session:
        await session.execute(
            update(LinkSession).where(LinkSession.state_hash == _hash(state)).values(**values)
        )


class TestPendingCap:
    async def test_a_thousand_starts_by_one_owner_leave_at_most_the_cap(
        self, db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
    ) -> None:
        other_owners_state = await _start(client, "owner-b")
        states: list[str] = []
        for _ in range(200):  # 1,000 starts, 5 at a time: the cap holds under concurrency too
            states += await asyncio.gather(*(_start(client, "owner-a") for _ in range(5)))

        rows = await _rows(db, "owner-a")
        assert len(rows) == DEFAULT_CAP
        assert {row.state_hash for row in rows} <= {_hash(state) for state in states}
        assert [row.owner_id for row in await _rows(db, "owner-b")] == ["owner-b"]
        assert (await _rows(db, "owner-b"))[0].state_hash == _hash(other_owners_state)

    async def test_the_evicted_oldest_state_is_refused_as_unknown_at_the_callback(
        self, db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
    ) -> None:
        oldest = await _start(client, "owner-a")
        kept = [await _start(client, "owner-a") for _ in range(DEFAULT_CAP)]

        response = await client.get(f"/oauth/callback?code=abc&state={oldest}")
        # Refused like any state we cannot honour: no redirect, no call to Allegro, nothing stored.
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_state"
        assert "location" not in response.headers
        assert len(await _rows(db, "owner-a")) == DEFAULT_CAP
        # The newest ones are intact: an error callback still reaches their return_to.
        response = await client.get(f"/oauth/callback?error=access_denied&state={kept[0]}")
        assert response.status_code == 303
        assert returned_params(response) == {"allegro_link": "error", "error": "access_denied"}

    async def test_states_past_their_callback_or_expired_do_not_count(
        self, db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
    ) -> None:
        called_back = await _start(client, "owner-a")
        await client.get(f"/oauth/callback?error=access_denied&state={called_back}")
        expired = await _start(client, "owner-a")
        await _set(db, expired, expires_at=utcnow() - timedelta(seconds=1))
        for _ in range(DEFAULT_CAP):
            await _start(client, "owner-a")

        hashes = {row.state_hash for row in await _rows(db, "owner-a")}
        assert {_hash(called_back), _hash(expired)} <= hashes
        response = await client.get(f"/oauth/callback?code=abc&state={expired}")
        assert returned_params(response) == {"allegro_link": "error", "error": "state_expired"}


class TestFlood:
    async def test_starts_queued_behind_a_stuck_one_get_429_not_a_held_connection(
        self, db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
    ) -> None:
        async with db.begin() as blocker:
            # What a start of owner-a holds while it runs, held here for longer than starts may wait.
            await blocker.execute(select(func.pg_advisory_xact_lock(0x616C6B31, func.hashtext("owner-a"))))
            response = await client.post(
                "/accounts/authorize", json={"return_to": RETURN_TO}, headers=bearer(owner_token("owner-a"))
            )
            other_owner = await _start(client, "owner-b")
        assert response.status_code == 429
        assert response.json()["code"] == "too_many_link_starts"
        assert response.headers["retry-after"] == "1"
        assert [row.state_hash for row in await _rows(db)] == [_hash(other_owner)]


class TestCapSetting:
    @pytest.fixture
    async def small_cap_client(self, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        capped = settings.model_copy(update={"link_max_pending_per_owner": 3})
        async with lifespan(create_app(capped)) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                yield client

    async def test_the_cap_is_configurable_and_the_oldest_go_first(
        self, small_cap_client: httpx.AsyncClient
    ) -> None:
        states = [await _start(small_cap_client, "owner-a") for _ in range(5)]
        answers = [
            (await small_cap_client.get(f"/oauth/callback?error=access_denied&state={state}")).status_code
            for state in states
        ]
        assert answers == [400, 400, 303, 303, 303]


class TestReturnToLength:
    async def test_a_return_to_over_2048_characters_is_a_422_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/accounts/authorize",
            json={"return_to": RETURN_TO + "?x=" + "a" * 2048},
            headers=bearer(owner_token("owner-a")),
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"


class TestPurge:
    async def test_an_expired_state_keeps_answering_state_expired_without_its_verifier(
        self, db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
    ) -> None:
        state = await _start(client, "owner-a")
        await _set(db, state, expires_at=utcnow() - timedelta(hours=23))

        assert await purge_link_sessions(db) == 0
        (row,) = await _rows(db)
        assert row.code_verifier_ciphertext is None
        for _ in range(2):
            response = await client.get(f"/oauth/callback?code=abc&state={state}")
            assert returned_params(response) == {"allegro_link": "error", "error": "state_expired"}
        assert await purge_link_sessions(db) == 0  # answered late, still remembered

    async def test_expired_states_go_after_24_hours(
        self, db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
    ) -> None:
        never_called = await _start(client, "owner-a")
        called_late = await _start(client, "owner-a")
        await _set(db, called_late, expires_at=utcnow() - timedelta(seconds=1))
        await client.get(f"/oauth/callback?code=abc&state={called_late}")
        for state in (never_called, called_late):
            await _set(db, state, expires_at=utcnow() - timedelta(hours=24, seconds=1))

        assert await purge_link_sessions(db) == 2
        assert await _rows(db) == []

    async def test_failed_and_finished_callbacks_go_at_once(
        self, db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
    ) -> None:
        cancelled = await _start(client, "owner-a")
        await client.get(f"/oauth/callback?error=access_denied&state={cancelled}")
        completed = await _start(client, "owner-a")
        await _set(db, completed, callback_at=utcnow(), outcome="complete", completed_at=utcnow())
        window_over = await _start(client, "owner-a")
        await _set(
            db,
            window_over,
            callback_at=utcnow(),
            outcome="complete",
            completion_expires_at=utcnow() - timedelta(seconds=1),
            access_token_ciphertext=b"held",
            refresh_token_ciphertext=b"held",
        )
        stalled = await _start(client, "owner-a")
        await _set(db, stalled, callback_at=utcnow() - timedelta(hours=2))

        assert await purge_link_sessions(db) == 4
        assert await _rows(db) == []

    async def test_what_may_still_be_used_is_kept_whole(
        self, db: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
    ) -> None:
        pending = await _start(client, "owner-a")
        exchanging = await _start(client, "owner-a")  # the callback is talking to Allegro right now
        await _set(db, exchanging, callback_at=utcnow(), expires_at=utcnow() - timedelta(seconds=1))
        awaiting_completion = await _start(client, "owner-a")
        await _set(
            db,
            awaiting_completion,
            callback_at=utcnow(),
            outcome="complete",
            completion_expires_at=utcnow() + timedelta(minutes=5),
        )

        assert await purge_link_sessions(db) == 0
        rows = {row.state_hash: row for row in await _rows(db)}
        assert set(rows) == {_hash(pending), _hash(exchanging), _hash(awaiting_completion)}
        assert rows[_hash(pending)].code_verifier_ciphertext is not None
        async with db() as session:
            assert await session.scalar(select(func.count()).select_from(LinkSession)) == 3
