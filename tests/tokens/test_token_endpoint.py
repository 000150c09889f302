"""GET /accounts/{id}/token and POST …/token/refresh against the fake Allegro over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.models import Account, AccountEvent, AccountStatus
from allegro_link.db import utcnow
from allegro_link.settings import Settings
from allegro_link.tokens.models import TokenIssue
from tests.support.accounts import update_account
from tests.support.factories import bearer, end_to_end_settings, owner_token
from tests.support.keys import new_api_key
from tests.support.link import LinkHarness
from tests.support.statements import driver_statements
from tests.support.tokens import ME_HEADERS, PATIENT_WAITS, Linked, expire_access
from tests.support.waiting import until


async def _run(settings: Settings, statement: Any) -> Any:
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.begin() as connection:
            return await connection.execute(statement)
    finally:
        await engine.dispose()


async def _break_our_client_secret(harness: LinkHarness) -> None:
    """Allegro stops accepting our client's secret (rotated at Allegro, say): every call with it gets 401."""
    response = await harness.fake.post(
        "/__fake__/clients",
        json={
            "client_id": harness.settings.client_id,
            "client_secret": "rotated-elsewhere",
            "redirect_uris": [harness.settings.redirect_uri],
        },
    )
    assert response.status_code == 201, response.text


@contextmanager
def account_reads() -> Iterator[list[str]]:
    """The fresh-token reads of an account row (the broker's SELECT … WHERE id, not FOR UPDATE) that
    this process sends meanwhile, on the driver or through any engine; the service under test runs in a
    thread here."""
    seen: list[str] = []

    def record(statement: str) -> None:
        row_read = statement.startswith("SELECT accounts.id") and "WHERE accounts.id" in statement
        if row_read and "FOR UPDATE" not in statement:
            seen.append(statement)

    def record_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        record(statement)

    event.listen(Engine, "before_cursor_execute", record_execute)
    try:
        with driver_statements() as on_the_driver:
            yield seen
        for statement in on_the_driver:
            record(statement)
    finally:
        event.remove(Engine, "before_cursor_execute", record_execute)


class TestFreshToken:
    async def test_valid_token_is_served_without_calling_allegro(self, linked: Linked) -> None:
        response = await linked.token()
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["account_id"] == linked.account_id
        assert body["token_type"] == "bearer"
        assert body["login"] == "Sprzedawca1"
        assert body["access_token"].startswith("eyJ")
        assert response.headers["cache-control"] == "no-store"
        assert await linked.refresh_calls() == 0

    async def test_the_token_works_at_allegro(self, linked: Linked) -> None:
        access = await linked.access_token()
        me = await linked.harness.fake.get(
            "/me",
            headers={**ME_HEADERS, "Authorization": f"Bearer {access}"},
        )
        assert me.status_code == 200
        assert me.json()["login"] == "Sprzedawca1"

    async def test_every_token_handed_out_is_recorded(self, linked: Linked) -> None:
        await linked.token()
        await linked.token()
        await asyncio.sleep(1.5)  # the audit log writes in batches, once a second
        count = (await _run(linked.settings, select(func.count()).select_from(TokenIssue))).scalar()
        assert count == 2

    @pytest.mark.parametrize("query", ["?min_valid_for=-1", "?min_valid_for=3601", "?min_valid_for=abc"])
    async def test_min_valid_for_is_bounded(self, linked: Linked, query: str) -> None:
        response = await linked.token(query)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"


class TestWhoMayAsk:
    async def test_owner_jwt_is_forbidden(self, linked: Linked) -> None:
        response = await linked.harness.service.get(
            f"/accounts/{linked.account_id}/token", headers=bearer(owner_token("owner-a"))
        )
        assert response.status_code == 403

    async def test_key_without_scope_is_forbidden(self, linked: Linked) -> None:
        key = await new_api_key(linked.harness.settings, "accounts:read")
        response = await linked.harness.service.get(
            f"/accounts/{linked.account_id}/token", headers=bearer(key)
        )
        assert response.status_code == 403

    async def test_unknown_key_is_401(self, linked: Linked) -> None:
        response = await linked.harness.service.get(
            f"/accounts/{linked.account_id}/token", headers=bearer("alk_" + "x" * 12 + "_" + "y" * 43)
        )
        assert response.status_code == 401

    async def test_unknown_account_is_404(self, linked: Linked) -> None:
        response = await linked.harness.service.get(
            f"/accounts/{uuid.uuid4()}/token", headers=bearer(linked.key)
        )
        assert response.status_code == 404


class TestRefresh:
    @pytest.fixture
    def link_settings(self, database_url: str, fake_and_service_ports: tuple[int, int]) -> Settings:
        # A test here holds the refresh at Allegro until 20 callers have joined it: no wait of the
        # service may end first (the end-to-end read timeout is 2 s, shorter than joining under load).
        return end_to_end_settings(database_url, fake_and_service_ports, **PATIENT_WAITS)

    async def test_expired_access_token_is_refreshed_once(self, linked: Linked) -> None:
        before = await linked.access_token()
        await linked.expire_access()
        response = await linked.token()
        assert response.status_code == 200
        after = response.json()["access_token"]
        assert after != before
        assert await linked.refresh_calls() == 1
        assert await linked.access_token() == after
        assert await linked.refresh_calls() == 1

    async def test_min_valid_for_triggers_an_early_refresh(self, linked: Linked) -> None:
        await linked.expire_access(seconds_left=200)
        assert (await linked.token("?min_valid_for=100")).status_code == 200
        assert await linked.refresh_calls() == 0
        assert (await linked.token("?min_valid_for=300")).status_code == 200
        assert await linked.refresh_calls() == 1

    async def test_concurrent_requests_share_one_refresh(self, linked: Linked) -> None:
        await linked.expire_access()
        responses = await asyncio.gather(*(linked.token() for _ in range(50)))
        assert {r.status_code for r in responses} == {200}
        assert len({r.json()["access_token"] for r in responses}) == 1
        assert await linked.refresh_calls() == 1

    async def test_callers_arriving_during_a_refresh_join_it_without_reading_the_account(
        self, linked: Linked
    ) -> None:
        # Held at Allegro until all 20 have joined: a fixed delay (0.5 s) ran out on a loaded machine
        # before the followers got there, and the late ones then read the refreshed row.
        await linked.fault(kind="hold")
        await linked.expire_access()
        leader = asyncio.create_task(linked.token())

        async def at_allegro() -> bool:
            return await linked.refresh_calls() == 1

        await until(at_allegro, within=30, what="the refresh to reach Allegro")
        with account_reads() as reads:
            joining = [asyncio.create_task(linked.token()) for _ in range(20)]

            async def all_joined() -> bool:
                metrics = (await linked.harness.service.get("/metrics")).text
                return "allegro_link_token_refresh_coalesced_waiters_total 20.0" in metrics

            await until(all_joined, within=30, what="20 callers to join the refresh")
            await linked.harness.fake.post("/__fake__/faults/release")
            followers = await asyncio.gather(*joining)
        responses = [await leader, *followers]

        assert {r.status_code for r in responses} == {200}
        assert len({r.json()["access_token"] for r in responses}) == 1
        assert reads == [], "a caller that can join the refresh under way has no row to read"
        assert await linked.refresh_calls() == 1

    async def test_rejected_token_that_was_already_replaced_causes_no_refresh(self, linked: Linked) -> None:
        old = await linked.access_token()
        await linked.expire_access()
        new = await linked.access_token()
        assert await linked.refresh_calls() == 1
        assert await linked.refreshed_token({"rejected_token": old}) == new
        assert await linked.refresh_calls() == 1

    async def test_rejected_current_token_is_refreshed(self, linked: Linked) -> None:
        current = await linked.access_token()
        await update_account(
            linked.settings, linked.account_id, last_refreshed_at=utcnow() - timedelta(minutes=1)
        )
        assert await linked.refreshed_token({"rejected_token": current}) != current
        assert await linked.refresh_calls() == 1

    async def test_forced_refreshes_are_limited_to_one_per_ten_seconds(self, linked: Linked) -> None:
        first = await linked.refreshed_token()
        again = await asyncio.gather(
            *(linked.refresh() for _ in range(3)),
            *(linked.refresh({"rejected_token": first}) for _ in range(3)),
        )
        assert {r.json()["access_token"] for r in again} == {first}
        assert await linked.refresh_calls() == 1


class TestForcedRefreshWindow:
    """Only a forced refresh opens the 10 s window: any other pair reported rejected is refreshed at once."""

    @pytest.mark.parametrize("reported", ["rejected_token", "no_body"])
    async def test_a_token_just_issued_by_the_link_is_refreshed(self, linked: Linked, reported: str) -> None:
        issued = await linked.access_token()
        body = {"rejected_token": issued} if reported == "rejected_token" else None
        assert await linked.refreshed_token(body) != issued
        assert await linked.refresh_calls() == 1

    async def test_a_token_just_issued_by_a_due_refresh_is_refreshed(self, linked: Linked) -> None:
        await linked.expire_access()
        due = await linked.access_token()
        assert await linked.refresh_calls() == 1
        assert await linked.refreshed_token({"rejected_token": due}) != due
        assert await linked.refresh_calls() == 2

    async def test_a_due_refresh_after_a_forced_one_ends_the_window(self, linked: Linked) -> None:
        forced = await linked.refreshed_token()
        await linked.expire_access()
        due = await linked.access_token()
        assert due != forced
        assert await linked.refreshed_token({"rejected_token": due}) not in (forced, due)
        assert await linked.refresh_calls() == 3

    async def test_rotated_refresh_token_is_stored_encrypted(self, linked: Linked) -> None:
        await linked.expire_access()
        await linked.token()
        row = await linked.row()
        assert row.token_version == 2
        assert row.refresh_token_ciphertext is not None and b"eyJ" not in row.refresh_token_ciphertext


class TestFailures:
    async def test_revoked_grant_requires_relogin(self, linked: Linked) -> None:
        await linked.harness.fake.post("/__fake__/users/Sprzedawca1/revoke")
        await linked.expire_access()
        response = await linked.token()
        assert response.status_code == 409
        assert response.json()["code"] == "relogin_required"
        account = (
            await linked.harness.service.get(
                f"/accounts/{linked.account_id}", headers=bearer(owner_token("owner-a"))
            )
        ).json()
        assert (account["status"], account["relogin_reason"]) == ("relogin_required", "grant_revoked")
        kinds = (
            (await _run(linked.settings, select(AccountEvent.type).order_by(AccountEvent.id))).scalars().all()
        )
        assert kinds[-1] == "account.relogin_required"

    async def test_relogin_required_account_gets_409_even_with_a_live_token(self, linked: Linked) -> None:
        await linked.harness.fake.post("/__fake__/users/Sprzedawca1/revoke")
        await linked.expire_access()
        await linked.token()
        await linked.expire_access(seconds_left=3600)
        assert (await linked.token()).status_code == 409

    async def test_invalid_grant_is_refresh_rejected(self, linked: Linked) -> None:
        await linked.harness.fake.post("/__fake__/users/Sprzedawca1/expire", json={"what": "refresh"})
        await linked.expire_access()
        response = await linked.token()
        assert response.status_code == 409
        assert response.json()["relogin_reason"] in ("refresh_rejected", "refresh_token_expired")

    @pytest.mark.parametrize("fault", [{"kind": "status", "status": 503}, {"kind": "status", "status": 429}])
    async def test_outage_with_no_valid_token_is_503_and_flags_nothing(
        self, linked: Linked, fault: dict[str, Any]
    ) -> None:
        await linked.fault(count=5, **fault)
        await linked.expire_access()
        response = await linked.token()
        assert response.status_code == 503
        assert response.json()["code"] == "allegro_unavailable"
        assert int(response.headers["retry-after"]) >= 1
        assert (await linked.row()).status.value == "active"

    async def test_outage_serves_the_held_token_while_it_lasts(self, linked: Linked) -> None:
        await linked.fault(kind="status", status=500, count=5)
        await linked.expire_access(seconds_left=120)
        response = await linked.token()  # wants 300 s, the held token has 120 s: served anyway
        assert response.status_code == 200
        assert (await linked.row()).status.value == "active"

    async def test_timeout_beyond_the_deadline_flags_nothing(self, linked: Linked) -> None:
        await linked.fault(kind="delay", delay_seconds=7, count=1)
        await linked.expire_access()
        response = await linked.token()
        assert response.status_code == 503
        assert (await linked.row()).status.value == "active"

    async def test_a_secret_broken_just_after_a_revocation_flags_no_other_account(
        self, linked: Linked
    ) -> None:
        others = []
        for login in ("Inny1", "Inny2", "Inny3"):
            other = await linked.harness.link("owner-a", login)
            assert other.status_code == 200, other.text
            others.append(other.json()["account"]["id"])
        # A real revocation: the 401 is judged with good credentials and the account is flagged.
        await linked.harness.fake.post("/__fake__/users/Sprzedawca1/revoke")
        await linked.expire_access()
        assert (await linked.token()).status_code == 409
        # Within the same minute our secret stops working (rotated at Allegro, say).
        await _break_our_client_secret(linked.harness)
        await expire_access(linked.settings)
        for account_id in others:
            response = await linked.harness.service.get(
                f"/accounts/{account_id}/token", headers=bearer(linked.key)
            )
            assert response.status_code == 503, response.status_code
            assert response.json()["code"] == "allegro_unavailable"
        statuses = dict((await _run(linked.settings, select(Account.login, Account.status))).all())
        assert statuses == {
            "Sprzedawca1": AccountStatus.RELOGIN_REQUIRED,
            "Inny1": AccountStatus.ACTIVE,
            "Inny2": AccountStatus.ACTIVE,
            "Inny3": AccountStatus.ACTIVE,
        }

    async def test_broken_client_secret_flags_nothing(self, linked: Linked) -> None:
        # Allegro stops accepting our client: every refresh and every exchange answers 401.
        await _break_our_client_secret(linked.harness)
        await linked.expire_access()
        response = await linked.token()
        assert response.status_code == 503
        assert response.json()["code"] == "allegro_unavailable"
        assert (await linked.row()).status.value == "active"
