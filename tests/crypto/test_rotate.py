from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import secrets
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from allegro_link.accounts.models import Account
from allegro_link.crypto.keys import KeyRing
from allegro_link.crypto.rotate import rotate_encryption
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import create_sessionmaker, utcnow, uuid7
from allegro_link.oauth.models import LinkSession
from allegro_link.settings import Settings, parse_encryption_keys
from tests.support.accounts import insert_account
from tests.support.factories import ENCRYPTION_KEY, OLD_ENCRYPTION_KEY, make_settings

T = TypeVar("T")

FOREIGN_KEY = "t9:" + base64.b64encode(bytes(range(64, 96))).decode()

OLD_RING = KeyRing(parse_encryption_keys(OLD_ENCRYPTION_KEY))
ROTATED_RING = KeyRing(parse_encryption_keys(f"{ENCRYPTION_KEY},{OLD_ENCRYPTION_KEY}"))
NEW_ONLY_RING = KeyRing(parse_encryption_keys(ENCRYPTION_KEY))


@pytest.fixture
def old_key_settings(database_url: str) -> Settings:
    """Settings of a deployment from before the rotation: the old key is the only key."""
    return make_settings(database_url, encryption_keys=OLD_ENCRYPTION_KEY)


async def _insert_link_session(engine: AsyncEngine, ring: KeyRing) -> LinkSession:
    vault = TokenVault(ring)
    link = LinkSession(
        id=uuid7(),
        state_hash=secrets.token_bytes(32),
        owner_id="owner-a",
        return_to="https://panel.example.com/allegro/",
        expires_at=utcnow() + timedelta(minutes=10),
    )
    for column, plaintext in [
        (LinkSession.code_verifier_ciphertext, "verifier-plain"),
        (LinkSession.access_token_ciphertext, "session-access-plain"),
        (LinkSession.refresh_token_ciphertext, "session-refresh-plain"),
    ]:
        setattr(link, column.key, vault.seal(column, link.id, plaintext))
    link.access_token_expires_at = utcnow() + timedelta(hours=12)
    async with create_sessionmaker(engine).begin() as session:
        session.add(link)
    return link


async def _account(engine: AsyncEngine, account_id: uuid.UUID) -> Account:
    async with create_sessionmaker(engine)() as session:
        account = await session.get(Account, account_id)
    assert account is not None
    return account


def _refresh_token(ring: KeyRing, account: Account) -> str:
    assert account.refresh_token_ciphertext is not None
    return TokenVault(ring).open(
        Account.refresh_token_ciphertext, account.id, account.refresh_token_ciphertext
    )


async def _eventually(check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class OtherReplica:
    """A second database client on its own thread and event loop.

    SQLAlchemy's cursor events are synchronous. To act between the rotation's select and its update,
    the test blocks the rotation inside such an event while this client writes, as another replica would.
    """

    APPLICATION_NAME = "rotation-test-other-replica"

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._engine = create_async_engine(
            url, connect_args={"server_settings": {"application_name": self.APPLICATION_NAME}}
        )

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def write_refresh_blob(self, account_id: uuid.UUID, blob: bytes) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(Account).where(Account.id == account_id).values(refresh_token_ciphertext=blob)
            )

    async def is_waiting_for_a_lock(self) -> bool:
        async with self._engine.connect() as connection:
            waiting = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
                    "AND datname = current_database() AND wait_event_type = 'Lock'"
                ),
                {"name": self.APPLICATION_NAME},
            )
        return bool(waiting)

    def close(self) -> None:
        self.submit(self._engine.dispose()).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def other_replica(database_url: str) -> Iterator[OtherReplica]:
    replica = OtherReplica(database_url)
    yield replica
    replica.close()


class TestRotate:
    async def test_old_key_blobs_are_resealed_under_the_primary_and_keep_their_plaintext(
        self, engine: AsyncEngine, old_key_settings: Settings
    ) -> None:
        accounts = [
            await insert_account(old_key_settings, login=f"seller-{n}", refresh_token=f"refresh-{n}")
            for n in range(5)
        ]
        link = await _insert_link_session(engine, OLD_RING)

        report = await rotate_encryption(engine, ROTATED_RING, batch_size=2)

        assert report.rotated == {
            "accounts.access_token_ciphertext": 5,
            "accounts.refresh_token_ciphertext": 5,
            "link_sessions.code_verifier_ciphertext": 1,
            "link_sessions.access_token_ciphertext": 1,
            "link_sessions.refresh_token_ciphertext": 1,
            "webhook_endpoints.secret_ciphertext": 0,
            "webhook_endpoints.previous_secret_ciphertext": 0,
        }
        assert report.total_rotated == 13
        assert report.complete
        # The old key can now be dropped from the configuration: the new key alone opens everything.
        vault = TokenVault(NEW_ONLY_RING)
        for n, original in enumerate(accounts):
            stored = await _account(engine, original.id)
            assert _refresh_token(NEW_ONLY_RING, stored) == f"refresh-{n}"
            assert stored.access_token_ciphertext is not None
            assert (
                vault.open(Account.access_token_ciphertext, stored.id, stored.access_token_ciphertext)
                == "access-token-plain"
            )
            # Re-encryption is not a new token pair: the refresh path's version check is unaffected.
            assert stored.token_version == original.token_version
            assert stored.updated_at == original.updated_at
        async with create_sessionmaker(engine)() as session:
            stored_link = await session.get(LinkSession, link.id)
        assert stored_link is not None
        assert stored_link.code_verifier_ciphertext is not None
        assert (
            vault.open(LinkSession.code_verifier_ciphertext, link.id, stored_link.code_verifier_ciphertext)
            == "verifier-plain"
        )

    async def test_a_second_run_rotates_nothing(
        self, engine: AsyncEngine, old_key_settings: Settings
    ) -> None:
        account = await insert_account(old_key_settings)
        await _insert_link_session(engine, OLD_RING)
        await rotate_encryption(engine, ROTATED_RING)
        after_first = (await _account(engine, account.id)).refresh_token_ciphertext

        report = await rotate_encryption(engine, ROTATED_RING)

        assert report.total_rotated == 0
        assert report.complete
        assert (await _account(engine, account.id)).refresh_token_ciphertext == after_first

    async def test_blobs_already_under_the_primary_are_left_byte_for_byte(
        self, engine: AsyncEngine, settings: Settings
    ) -> None:
        account = await insert_account(settings)

        report = await rotate_encryption(engine, ROTATED_RING)

        assert report.total_rotated == 0
        stored = await _account(engine, account.id)
        assert stored.refresh_token_ciphertext == account.refresh_token_ciphertext

    async def test_a_blob_no_configured_key_opens_is_reported_and_left_alone(
        self, engine: AsyncEngine, database_url: str, old_key_settings: Settings
    ) -> None:
        readable = await insert_account(old_key_settings, login="readable")
        foreign = await insert_account(
            make_settings(database_url, encryption_keys=FOREIGN_KEY), login="foreign"
        )

        started = time.monotonic()
        report = await rotate_encryption(engine, ROTATED_RING, retry_delay_seconds=5)

        # Known-unreadable blobs do not make the rotation wait and retry.
        assert time.monotonic() - started < 5
        assert not report.complete
        assert report.still_pending == 0
        assert {(b.table, b.column, b.row_id) for b in report.unreadable} == {
            ("accounts", "access_token_ciphertext", foreign.id),
            ("accounts", "refresh_token_ciphertext", foreign.id),
        }
        assert all("unknown encryption key id 't9'" in b.reason for b in report.unreadable)
        stored_foreign = await _account(engine, foreign.id)
        assert stored_foreign.refresh_token_ciphertext == foreign.refresh_token_ciphertext
        assert report.rotated["accounts.refresh_token_ciphertext"] == 1
        assert _refresh_token(NEW_ONLY_RING, await _account(engine, readable.id)) == "refresh-token-plain"

    async def test_a_key_ring_without_the_old_key_changes_nothing_and_reports_every_blob(
        self, engine: AsyncEngine, old_key_settings: Settings
    ) -> None:
        accounts = [await insert_account(old_key_settings, login=f"seller-{n}") for n in range(3)]

        report = await rotate_encryption(engine, NEW_ONLY_RING, retry_delay_seconds=5)

        assert report.total_rotated == 0
        assert report.still_pending == 0
        assert len(report.unreadable) == 6
        for account in accounts:
            stored = await _account(engine, account.id)
            assert stored.refresh_token_ciphertext == account.refresh_token_ciphertext

    async def test_a_corrupted_blob_is_reported_not_fatal(
        self, engine: AsyncEngine, old_key_settings: Settings
    ) -> None:
        account = await insert_account(old_key_settings)
        async with engine.begin() as connection:
            await connection.execute(
                update(Account)
                .where(Account.id == account.id)
                .values(refresh_token_ciphertext=b"\x01\x02t0 truncated")
            )

        report = await rotate_encryption(engine, ROTATED_RING)

        assert [(b.column, b.row_id) for b in report.unreadable] == [("refresh_token_ciphertext", account.id)]
        assert report.rotated["accounts.access_token_ciphertext"] == 1
        assert (await _account(engine, account.id)).refresh_token_ciphertext == b"\x01\x02t0 truncated"


class TestRotateWhileServing:
    async def test_a_token_written_between_select_and_update_is_not_overwritten(
        self, engine: AsyncEngine, old_key_settings: Settings, other_replica: OtherReplica
    ) -> None:
        account = await insert_account(old_key_settings, refresh_token="refresh-before")
        # Another replica (already on the new configuration) stores a refreshed token for this account
        # right after the rotation has read the row and before it writes.
        written = TokenVault(ROTATED_RING).seal(
            Account.refresh_token_ciphertext, account.id, "refresh-from-other-replica"
        )
        writes: list[concurrent.futures.Future[None]] = []

        def write_after_select(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            reads_a_batch = statement.startswith("SELECT accounts.id") and "count(" not in statement
            if writes or not reads_a_batch:
                return
            writes.append(other_replica.submit(other_replica.write_refresh_blob(account.id, written)))
            deadline = time.monotonic() + 10
            # Hold the rotation here until the other write has landed or is queued behind a row lock.
            while not writes[0].done():
                if other_replica.submit(other_replica.is_waiting_for_a_lock()).result(timeout=10):
                    break
                assert time.monotonic() < deadline, "the concurrent write neither landed nor waited"
                time.sleep(0.01)

        event.listen(engine.sync_engine, "after_cursor_execute", write_after_select)
        try:
            await rotate_encryption(engine, ROTATED_RING, retry_delay_seconds=0.05)
        finally:
            event.remove(engine.sync_engine, "after_cursor_execute", write_after_select)
        await asyncio.wrap_future(writes[0])

        stored = await _account(engine, account.id)
        assert stored.refresh_token_ciphertext == written
        assert _refresh_token(NEW_ONLY_RING, stored) == "refresh-from-other-replica"

    async def test_a_row_locked_by_a_refresh_is_rotated_once_released(
        self, engine: AsyncEngine, old_key_settings: Settings
    ) -> None:
        busy = await insert_account(old_key_settings, login="busy", refresh_token="refresh-before")
        idle = await insert_account(old_key_settings, login="idle")
        async with engine.connect() as refresher:
            await refresher.begin()
            await refresher.execute(select(Account.id).where(Account.id == busy.id).with_for_update())
            rotation = asyncio.create_task(
                rotate_encryption(engine, ROTATED_RING, retry_delay_seconds=0.05, max_wait_seconds=30)
            )

            async def idle_rotated() -> bool:
                blob = (await _account(engine, idle.id)).refresh_token_ciphertext
                return blob is not None and not ROTATED_RING.needs_rotation(blob)

            await _eventually(idle_rotated)
            assert not rotation.done()
            # The refresh finishes on a replica that still seals with the old key.
            renewed = TokenVault(OLD_RING).seal(Account.refresh_token_ciphertext, busy.id, "refresh-after")
            await refresher.execute(
                update(Account).where(Account.id == busy.id).values(refresh_token_ciphertext=renewed)
            )
            await refresher.commit()

        report = await asyncio.wait_for(rotation, timeout=30)

        assert report.complete
        assert report.rotated["accounts.refresh_token_ciphertext"] == 2
        stored = await _account(engine, busy.id)
        assert stored.refresh_token_ciphertext is not None
        assert not ROTATED_RING.needs_rotation(stored.refresh_token_ciphertext)
        assert _refresh_token(NEW_ONLY_RING, stored) == "refresh-after"

    async def test_a_row_locked_past_the_deadline_is_reported_as_pending(
        self, engine: AsyncEngine, old_key_settings: Settings
    ) -> None:
        busy = await insert_account(old_key_settings, login="busy")
        await insert_account(old_key_settings, login="idle")
        async with engine.connect() as refresher:
            await refresher.begin()
            await refresher.execute(select(Account.id).where(Account.id == busy.id).with_for_update())

            report = await rotate_encryption(
                engine, ROTATED_RING, retry_delay_seconds=0.05, max_wait_seconds=0.3
            )

            await refresher.rollback()

        assert report.still_pending == 2  # both blobs of the locked row
        assert not report.complete
        assert report.total_rotated == 2
        assert (await _account(engine, busy.id)).refresh_token_ciphertext == busy.refresh_token_ciphertext

        assert (await rotate_encryption(engine, ROTATED_RING)).complete
