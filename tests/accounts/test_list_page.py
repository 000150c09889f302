"""GET /accounts as it is built: plain items equal to `AccountOut`, and the counts in the page's statement."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import ColumnElement, event, func, select
from sqlalchemy.ext.asyncio import create_async_engine

from allegro_link.accounts.deadline import USE_RULE, sql_relogin_soon
from allegro_link.accounts.models import Account, AccountStatus, ReloginReason
from allegro_link.accounts.schemas import LISTED_COLUMNS, AccountOut, listed_account
from allegro_link.accounts.status import effective_status, sql_needs_relogin
from allegro_link.db import utcnow
from allegro_link.resources import Resources
from allegro_link.settings import Settings
from tests.support.accounts import insert_account
from tests.support.factories import bearer, owner_token
from tests.support.keys import new_api_key
from tests.support.statements import driver_statements

A = bearer(owner_token("owner-a"))
WINDOW = timedelta(days=14)  # ALLEGRO_LINK_RELOGIN_SOON_DAYS's default, which the app runs with here
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# Moments around the ones the rules compare against: now, the window's end, 90 days back.
_OFFSETS = st.sampled_from(
    [timedelta(0), WINDOW, -USE_RULE, WINDOW - USE_RULE, -WINDOW, 2 * WINDOW, -2 * USE_RULE]
).flatmap(
    lambda base: st.sampled_from([timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1)]).map(
        lambda nudge: base + nudge
    )
) | st.timedeltas(min_value=-3 * USE_RULE, max_value=3 * USE_RULE)
_MOMENTS = st.none() | _OFFSETS.map(lambda offset: NOW + offset)


@st.composite
def _account_values(draw: st.DrawFn) -> dict[str, Any]:
    status = draw(st.sampled_from(AccountStatus))
    return {
        "id": uuid.UUID(int=draw(st.integers(0, 2**128 - 1))),
        "owner_id": draw(st.text(min_size=1, max_size=5)),
        "allegro_user_id": draw(st.none() | st.text(max_size=5)),
        "login": draw(st.none() | st.text(max_size=5)),
        "status": status,
        "relogin_reason": None if status is AccountStatus.ACTIVE else draw(st.sampled_from(ReloginReason)),
        "status_changed_at": draw(_OFFSETS.map(lambda offset: NOW + offset)),
        "linked_at": draw(_MOMENTS),
        "last_refreshed_at": draw(_MOMENTS),
        "access_token_expires_at": draw(_MOMENTS),
        "refresh_token_expires_at": draw(_MOMENTS),
        "last_used_at": draw(_MOMENTS),
    }


@hypothesis_settings(max_examples=500, deadline=None)
@given(values=_account_values())
def test_a_listed_item_is_the_accounts_own_object_byte_for_byte(values: dict[str, Any]) -> None:
    """`listed_account` (list pages) writes exactly what `AccountOut.build` (one account) writes."""
    account = Account(**values)
    row = (*(values[key] for key in LISTED_COLUMNS), 7, 3)  # the counts ride after the columns
    as_model = AccountOut.build(effective_status(account, NOW), soon_window=WINDOW).model_dump_json()
    assert orjson.dumps(listed_account(row, NOW, WINDOW), option=orjson.OPT_UTC_Z) == as_model.encode()


async def _mixed_accounts(settings: Settings, owner_id: str) -> None:
    """One account of each kind the counts tell apart."""
    now = utcnow()
    await insert_account(settings, owner_id=owner_id, login="zwykle")
    await insert_account(
        settings, owner_id=owner_id, login="wygasle", refresh_expires_at=now - timedelta(hours=1)
    )
    await insert_account(
        settings,
        owner_id=owner_id,
        login="cofniete",
        status=AccountStatus.RELOGIN_REQUIRED,
        reason=ReloginReason.GRANT_REVOKED,
    )
    await insert_account(
        settings,
        owner_id=owner_id,
        login="stare",
        allegro_user_id=None,
        status=AccountStatus.RELOGIN_REQUIRED,
        reason=ReloginReason.LEGACY_ACCOUNT,
        access_token=None,
        refresh_token=None,
    )
    await insert_account(
        settings, owner_id=owner_id, login="wygasa", refresh_expires_at=now + timedelta(days=5)
    )
    # The 90-day rule: last used 80 days ago is 10 days from its deadline, 70 days ago is 20.
    await insert_account(
        settings, owner_id=owner_id, login="nieuzywane", last_used_at=now - timedelta(days=80)
    )
    await insert_account(settings, owner_id=owner_id, login="uzywane", last_used_at=now - timedelta(days=70))


async def _counted_apart(settings: Settings, owner_id: str | None) -> dict[str, int]:
    """The two counts as two statements of their own, as the list read them before."""

    def count(condition: ColumnElement[bool]) -> Any:
        statement = select(func.count()).select_from(Account).where(condition)
        return statement if owner_id is None else statement.where(Account.owner_id == owner_id)

    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.connect() as connection:
            return {
                "relogin_required_count": (await connection.execute(count(sql_needs_relogin()))).scalar_one(),
                "relogin_soon_count": (
                    await connection.execute(count(sql_relogin_soon(WINDOW)))
                ).scalar_one(),
            }
    finally:
        await engine.dispose()


def _counts(page: dict[str, Any]) -> dict[str, int]:
    return {name: page[name] for name in ("relogin_required_count", "relogin_soon_count")}


class TestCounts:
    async def test_the_counts_in_the_page_statement_equal_the_counts_read_apart(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        await _mixed_accounts(settings, "owner-a")
        await _mixed_accounts(settings, "owner-b")
        service = bearer(await new_api_key(settings, "accounts:read"))
        mine = await _counted_apart(settings, "owner-a")
        everyone = await _counted_apart(settings, None)
        assert mine == {"relogin_required_count": 3, "relogin_soon_count": 2}
        assert everyone == {"relogin_required_count": 6, "relogin_soon_count": 4}

        # Whatever the filters, and also when the page is empty (the counts are then read on their own).
        first = (await client.get("/accounts?limit=2", headers=A)).json()
        for query in (
            "",
            "?status=active",
            "?status=relogin_soon",
            "?login=nikt",
            f"?cursor={first['next_cursor']}",
        ):
            page = (await client.get(f"/accounts{query}", headers=A)).json()
            assert _counts(page) == mine, query
        assert _counts(first) == mine
        assert (await client.get("/accounts?login=nikt", headers=A)).json()["items"] == []
        assert _counts((await client.get("/accounts", headers=service)).json()) == everyone
        by_owner = (
            await client.get("/accounts?owner_id=owner-a&status=relogin_required", headers=service)
        ).json()
        assert _counts(by_owner) == mine
        nobody = (await client.get("/accounts?owner_id=owner-c", headers=service)).json()
        assert (nobody["items"], _counts(nobody)) == (
            [],
            {"relogin_required_count": 0, "relogin_soon_count": 0},
        )

    async def test_an_owner_counts_and_lists_only_its_own_accounts_under_every_filter(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        await _mixed_accounts(settings, "owner-b")
        mine = await insert_account(settings, owner_id="owner-a", login="zwykle")
        for query in (
            "",
            "?status=active",
            "?status=relogin_required",
            "?status=relogin_soon",
            "?login=zwykle",
        ):
            page = (await client.get(f"/accounts{query}", headers=A)).json()
            assert {item["owner_id"] for item in page["items"]} <= {"owner-a"}, query
            assert _counts(page) == {"relogin_required_count": 0, "relogin_soon_count": 0}, query
        listed = (await client.get("/accounts?login=zwykle", headers=A)).json()["items"]
        assert [item["id"] for item in listed] == [str(mine.id)]


class TestOneStatement:
    async def test_a_page_and_its_counts_are_one_statement_and_an_empty_page_two(
        self, settings: Settings, live: tuple[Resources, httpx.AsyncClient]
    ) -> None:
        resources, client = live
        await _mixed_accounts(settings, "owner-a")
        sent: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "relogin_required_count" in statement:  # the list's, not a background task's
                sent.append(statement)

        event.listen(resources.engine.sync_engine, "before_cursor_execute", record)
        try:
            with driver_statements() as on_the_driver:
                page = await client.get("/accounts", headers=A)
                assert (page.status_code, len(page.json()["items"])) == (200, 7)
                assert len(on_the_driver) == 1
                assert "relogin_required_count" in on_the_driver[0]
                empty = await client.get("/accounts?login=nikt", headers=A)
                assert (empty.json()["items"], len(on_the_driver)) == ([], 3)
        finally:
            event.remove(resources.engine.sync_engine, "before_cursor_execute", record)
        assert sent == [], "no statement of the list's goes through SQLAlchemy's execution"

    async def test_every_listed_item_is_what_the_accounts_own_endpoint_answers(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        await _mixed_accounts(settings, "owner-a")
        items = (await client.get("/accounts", headers=A)).json()["items"]
        assert len(items) == 7
        for item in items:
            assert (await client.get(f"/accounts/{item['id']}", headers=A)).json() == item
