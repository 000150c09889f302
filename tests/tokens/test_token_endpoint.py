"""GET /accounts/{id}/token and POST …/token/refresh against the fake Allegro over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account, AccountEvent, AccountStatus
from allegro_link.db import utcnow
from allegro_link.settings import Settings
from allegro_link.tokens.models import TokenIssue
from tests.reliability.support import PATIENT_WAITS
from tests.support.factories import bearer, end_to_end_settings, owner_token
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness
from tests.support.waiting import until


async def _run(url: str, statement: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            return await connection.execute(statement)
    finally:
        await engine.dispose()


@contextmanager
def account_reads() -> Iterator[list[str]]:
    """The fresh-token reads of an account row (the broker's SELECT … WHERE id, not FOR UPDATE) that
    any engine in this process sends meanwhile; the service under test runs in a thread here."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        row_read = statement.startswith("SELECT accounts.id") and "WHERE accounts.id" in statement
        if row_read and "FOR UPDATE" not in statement:
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


class Tokens:
    """A linked account plus a service key: the setting of every test here."""

    def __init__(self, harness: LinkHarness, account: dict[str, Any], key: str) -> None:
        self.harness = harness
        self.account = account
        self.key = key
        self.db = harness.settings.database_url.get_secret_value()

    @property
    def id(self) -> str:
        return str(self.account["id"])

    async def get(self, query: str = "") -> httpx.Response:
        return await self.harness.service.get(f"/accounts/{self.id}/token{query}", headers=bearer(self.key))

    async def refresh(self, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.harness.service.post(
            f"/accounts/{self.id}/token/refresh", json=body, headers=bearer(self.key)
        )

    async def expire_access(self, seconds_left: float = -1) -> None:
        await _run(
            self.db,
            update(Account)
            .where(Account.id == uuid.UUID(self.id))
            .values(access_token_expires_at=utcnow() + timedelta(seconds=seconds_left)),
        )

    async def refresh_calls(self) -> int:
        calls: int = (await self.harness.stats())["token_calls"]["refresh_token"]
        return calls

    async def row(self) -> Account:
        engine = create_async_engine(self.db)
        try:
            async with engine.connect() as connection:
                row = (
                    await connection.execute(select(Account).where(Account.id == uuid.UUID(self.id)))
                ).one()
                return Account(**row._mapping)
        finally:
            await engine.dispose()

    async def fault(self, **fault: Any) -> None:
        response = await self.harness.fake.post("/__fake__/faults", json={"endpoint": "token", **fault})
        assert response.status_code < 300, response.text


@pytest.fixture
async def tokens(harness: LinkHarness) -> Tokens:
    linked = await harness.link("owner-a", "Sprzedawca1")
    assert linked.status_code == 200, linked.text
    key = await new_api_key(harness.settings, "tokens:read")
    return Tokens(harness, linked.json()["account"], key)


class TestFreshToken:
    async def test_valid_token_is_served_without_calling_allegro(self, tokens: Tokens) -> None:
        response = await tokens.get()
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["account_id"] == tokens.id
        assert body["token_type"] == "bearer"
        assert body["login"] == "Sprzedawca1"
        assert body["access_token"].startswith("eyJ")
        assert response.headers["cache-control"] == "no-store"
        assert await tokens.refresh_calls() == 0

    async def test_the_token_works_at_allegro(self, tokens: Tokens) -> None:
        access = (await tokens.get()).json()["access_token"]
        me = await tokens.harness.fake.get(
            "/me",
            headers={"Authorization": f"Bearer {access}", "Accept": "application/vnd.allegro.public.v1+json"},
        )
        assert me.status_code == 200
        assert me.json()["login"] == "Sprzedawca1"

    async def test_every_token_handed_out_is_recorded(self, tokens: Tokens) -> None:
        await tokens.get()
        await tokens.get()
        await asyncio.sleep(1.5)  # the audit log writes in batches, once a second
        count = (await _run(tokens.db, select(func.count()).select_from(TokenIssue))).scalar()
        assert count == 2

    @pytest.mark.parametrize("query", ["?min_valid_for=-1", "?min_valid_for=3601", "?min_valid_for=abc"])
    async def test_min_valid_for_is_bounded(self, tokens: Tokens, query: str) -> None:
        response = await tokens.get(query)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"


class TestWhoMayAsk:
    async def test_owner_jwt_is_forbidden(self, tokens: Tokens) -> None:
        response = await tokens.harness.service.get(
            f"/accounts/{tokens.id}/token", headers=bearer(owner_token("owner-a"))
        )
        assert response.status_code == 403

    async def test_key_without_scope_is_forbidden(self, tokens: Tokens) -> None:
        key = await new_api_key(tokens.harness.settings, "accounts:read")
        response = await tokens.harness.service.get(f"/accounts/{tokens.id}/token", headers=bearer(key))
        assert response.status_code == 403

    async def test_unknown_key_is_401(self, tokens: Tokens) -> None:
        response = await tokens.harness.service.get(
            f"/accounts/{tokens.id}/token", headers=bearer("alk_" + "x" * 12 + "_" + "y" * 43)
        )
        assert response.status_code == 401

    async def test_unknown_account_is_404(self, tokens: Tokens) -> None:
        response = await tokens.harness.service.get(
            f"/accounts/{uuid.uuid4()}/token", headers=bearer(tokens.key)
        )
        assert response.status_code == 404


class TestRefresh:
    @pytest.fixture
    def link_settings(self, database_url: str, fake_and_service_ports: tuple[int, int]) -> Settings:
        # A test here holds the refresh at Allegro until 20 callers have joined it: no wait of the
        # service may end first (the end-to-end read timeout is 2 s, shorter than joining under load).
        return end_to_end_settings(database_url, fake_and_service_ports, **PATIENT_WAITS)

    async def test_expired_access_token_is_refreshed_once(self, tokens: Tokens) -> None:
        before = (await tokens.get()).json()["access_token"]
        await tokens.expire_access()
        response = await tokens.get()
        assert response.status_code == 200
        after = response.json()["access_token"]
        assert after != before
        assert await tokens.refresh_calls() == 1
        assert (await tokens.get()).json()["access_token"] == after
        assert await tokens.refresh_calls() == 1

    async def test_min_valid_for_triggers_an_early_refresh(self, tokens: Tokens) -> None:
        await tokens.expire_access(seconds_left=200)
        assert (await tokens.get("?min_valid_for=100")).status_code == 200
        assert await tokens.refresh_calls() == 0
        assert (await tokens.get("?min_valid_for=300")).status_code == 200
        assert await tokens.refresh_calls() == 1

    async def test_concurrent_requests_share_one_refresh(self, tokens: Tokens) -> None:
        await tokens.expire_access()
        responses = await asyncio.gather(*(tokens.get() for _ in range(50)))
        assert {r.status_code for r in responses} == {200}
        assert len({r.json()["access_token"] for r in responses}) == 1
        assert await tokens.refresh_calls() == 1

    async def test_callers_arriving_during_a_refresh_join_it_without_reading_the_account(
        self, tokens: Tokens
    ) -> None:
        # Held at Allegro until all 20 have joined: a fixed delay (0.5 s) ran out on a loaded machine
        # before the followers got there, and the late ones then read the refreshed row.
        await tokens.fault(kind="hold")
        await tokens.expire_access()
        leader = asyncio.create_task(tokens.get())

        async def at_allegro() -> bool:
            return await tokens.refresh_calls() == 1

        await until(at_allegro, within=30, what="the refresh to reach Allegro")
        with account_reads() as reads:
            joining = [asyncio.create_task(tokens.get()) for _ in range(20)]

            async def all_joined() -> bool:
                metrics = (await tokens.harness.service.get("/metrics")).text
                return "allegro_link_token_refresh_coalesced_waiters_total 20.0" in metrics

            await until(all_joined, within=30, what="20 callers to join the refresh")
            await tokens.harness.fake.post("/__fake__/faults/release")
            followers = await asyncio.gather(*joining)
        responses = [await leader, *followers]

        assert {r.status_code for r in responses} == {200}
        assert len({r.json()["access_token"] for r in responses}) == 1
        assert reads == [], "a caller that can join the refresh under way has no row to read"
        assert await tokens.refresh_calls() == 1

    async def test_rejected_token_that_was_already_replaced_causes_no_refresh(self, tokens: Tokens) -> None:
        old = (await tokens.get()).json()["access_token"]
        await tokens.expire_access()
        new = (await tokens.get()).json()["access_token"]
        assert await tokens.refresh_calls() == 1
        response = await tokens.refresh({"rejected_token": old})
        assert response.status_code == 200
        assert response.json()["access_token"] == new
        assert await tokens.refresh_calls() == 1

    async def test_rejected_current_token_is_refreshed(self, tokens: Tokens) -> None:
        current = (await tokens.get()).json()["access_token"]
        await _run(tokens.db, update(Account).values(last_refreshed_at=utcnow() - timedelta(minutes=1)))
        response = await tokens.refresh({"rejected_token": current})
        assert response.status_code == 200
        assert response.json()["access_token"] != current
        assert await tokens.refresh_calls() == 1

    async def test_forced_refreshes_are_limited_to_one_per_ten_seconds(self, tokens: Tokens) -> None:
        first = (await tokens.refresh()).json()["access_token"]
        again = await asyncio.gather(
            *(tokens.refresh() for _ in range(3)),
            *(tokens.refresh({"rejected_token": first}) for _ in range(3)),
        )
        assert {r.json()["access_token"] for r in again} == {first}
        assert await tokens.refresh_calls() == 1


class TestForcedRefreshWindow:
    """Only a forced refresh opens the 10 s window: any other pair reported rejected is refreshed at once."""

    @pytest.mark.parametrize("reported", ["rejected_token", "no_body"])
    async def test_a_token_just_issued_by_the_link_is_refreshed(self, tokens: Tokens, reported: str) -> None:
        linked = (await tokens.get()).json()["access_token"]
        response = await tokens.refresh({"rejected_token": linked} if reported == "rejected_token" else None)
        assert response.status_code == 200
        assert response.json()["access_token"] != linked
        assert await tokens.refresh_calls() == 1

    async def test_a_token_just_issued_by_a_due_refresh_is_refreshed(self, tokens: Tokens) -> None:
        await tokens.expire_access()
        due = (await tokens.get()).json()["access_token"]
        assert await tokens.refresh_calls() == 1
        response = await tokens.refresh({"rejected_token": due})
        assert response.status_code == 200
        assert response.json()["access_token"] != due
        assert await tokens.refresh_calls() == 2

    async def test_a_due_refresh_after_a_forced_one_ends_the_window(self, tokens: Tokens) -> None:
        forced = (await tokens.refresh()).json()["access_token"]
        await tokens.expire_access()
        due = (await tokens.get()).json()["access_token"]
        assert due != forced
        response = await tokens.refresh({"rejected_token": due})
        assert response.json()["access_token"] not in (forced, due)
        assert await tokens.refresh_calls() == 3

    async def test_rotated_refresh_token_is_stored_encrypted(self, tokens: Tokens) -> None:
        await tokens.expire_access()
        await tokens.get()
        row = await tokens.row()
        assert row.token_version == 2
        assert row.refresh_token_ciphertext is not None and b"eyJ" not in row.refresh_token_ciphertext


class TestFailures:
    async def test_revoked_grant_requires_relogin(self, tokens: Tokens) -> None:
        await tokens.harness.fake.post("/__fake__/users/Sprzedawca1/revoke")
        await tokens.expire_access()
        response = await tokens.get()
        assert response.status_code == 409
        assert response.json()["code"] == "relogin_required"
        account = (
            await tokens.harness.service.get(f"/accounts/{tokens.id}", headers=bearer(owner_token("owner-a")))
        ).json()
        assert (account["status"], account["relogin_reason"]) == ("relogin_required", "grant_revoked")
        kinds = (await _run(tokens.db, select(AccountEvent.type).order_by(AccountEvent.id))).scalars().all()
        assert kinds[-1] == "account.relogin_required"

    async def test_relogin_required_account_gets_409_even_with_a_live_token(self, tokens: Tokens) -> None:
        await tokens.harness.fake.post("/__fake__/users/Sprzedawca1/revoke")
        await tokens.expire_access()
        await tokens.get()
        await tokens.expire_access(seconds_left=3600)
        assert (await tokens.get()).status_code == 409

    async def test_invalid_grant_is_refresh_rejected(self, tokens: Tokens) -> None:
        await tokens.harness.fake.post("/__fake__/users/Sprzedawca1/expire", json={"what": "refresh"})
        await tokens.expire_access()
        response = await tokens.get()
        assert response.status_code == 409
        assert response.json()["relogin_reason"] in ("refresh_rejected", "refresh_token_expired")

    @pytest.mark.parametrize("fault", [{"kind": "status", "status": 503}, {"kind": "status", "status": 429}])
    async def test_outage_with_no_valid_token_is_503_and_flags_nothing(
        self, tokens: Tokens, fault: dict[str, Any]
    ) -> None:
        await tokens.fault(count=5, **fault)
        await tokens.expire_access()
        response = await tokens.get()
        assert response.status_code == 503
        assert response.json()["code"] == "allegro_unavailable"
        assert int(response.headers["retry-after"]) >= 1
        assert (await tokens.row()).status.value == "active"

    async def test_outage_serves_the_held_token_while_it_lasts(self, tokens: Tokens) -> None:
        await tokens.fault(kind="status", status=500, count=5)
        await tokens.expire_access(seconds_left=120)
        response = await tokens.get()  # wants 300 s, the held token has 120 s: served anyway
        assert response.status_code == 200
        assert (await tokens.row()).status.value == "active"

    async def test_timeout_beyond_the_deadline_flags_nothing(self, tokens: Tokens) -> None:
        await tokens.fault(kind="delay", delay_seconds=7, count=1)
        await tokens.expire_access()
        response = await tokens.get()
        assert response.status_code == 503
        assert (await tokens.row()).status.value == "active"

    async def test_a_secret_broken_just_after_a_revocation_flags_no_other_account(
        self, tokens: Tokens
    ) -> None:
        others = []
        for login in ("Inny1", "Inny2", "Inny3"):
            linked = await tokens.harness.link("owner-a", login)
            assert linked.status_code == 200, linked.text
            others.append(linked.json()["account"]["id"])
        # A real revocation: the 401 is judged with good credentials and the account is flagged.
        await tokens.harness.fake.post("/__fake__/users/Sprzedawca1/revoke")
        await tokens.expire_access()
        assert (await tokens.get()).status_code == 409
        # Within the same minute our secret stops working (rotated at Allegro, say).
        await tokens.harness.fake.post(
            "/__fake__/clients",
            json={
                "client_id": tokens.harness.settings.client_id,
                "client_secret": "rotated-elsewhere",
                "redirect_uris": [tokens.harness.settings.redirect_uri],
            },
        )
        await _run(tokens.db, update(Account).values(access_token_expires_at=utcnow() - timedelta(seconds=1)))
        for account_id in others:
            response = await tokens.harness.service.get(
                f"/accounts/{account_id}/token", headers=bearer(tokens.key)
            )
            assert response.status_code == 503, response.status_code
            assert response.json()["code"] == "allegro_unavailable"
        statuses = dict((await _run(tokens.db, select(Account.login, Account.status))).all())
        assert statuses == {
            "Sprzedawca1": AccountStatus.RELOGIN_REQUIRED,
            "Inny1": AccountStatus.ACTIVE,
            "Inny2": AccountStatus.ACTIVE,
            "Inny3": AccountStatus.ACTIVE,
        }

    async def test_broken_client_secret_flags_nothing(self, tokens: Tokens) -> None:
        # Allegro stops accepting our client: every refresh and every exchange answers 401.
        await tokens.harness.fake.post(
            "/__fake__/clients",
            json={
                "client_id": tokens.harness.settings.client_id,
                "client_secret": "rotated-elsewhere",
                "redirect_uris": [tokens.harness.settings.redirect_uri],
            },
        )
        await tokens.expire_access()
        response = await tokens.get()
        assert response.status_code == 503
        assert response.json()["code"] == "allegro_unavailable"
        assert (await tokens.row()).status.value == "active"
