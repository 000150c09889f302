"""A database that is up but turns us away (unknown role, wrong password, no such database) is a
configuration mistake: /readyz says so in a 503 problem, and start-up says so in one log line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from allegro_link.app import create_app
from allegro_link.ops.database import describe_refusal
from tests.support.factories import bearer, make_settings, owner_token
from tests.support.live import lifespan
from tests.support.logs import captured_logs

LOGIN_REFUSED = "The database refused the login"
NO_DATABASE = "The database named in the connection URL does not exist."


def unknown_role(database_url: str) -> str:
    return make_url(database_url).set(username="allegro_link_no_such_role").render_as_string(False)


def unknown_database(database_url: str) -> str:
    return make_url(database_url).set(database="allegro_link_no_such_database").render_as_string(False)


@asynccontextmanager
async def started(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, list[dict[str, object]]]]:
    """The app started on `database_url`, and the log lines its start-up wrote."""
    settings = make_settings(database_url)
    with captured_logs() as sink:
        async with lifespan(create_app(settings)) as manager:
            startup = [json.loads(line) for line in sink.getvalue().splitlines()]
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield http, startup


@pytest.mark.parametrize(
    ("broken_url", "expected"),
    [(unknown_role, LOGIN_REFUSED), (unknown_database, NO_DATABASE)],
    ids=["unknown-role", "unknown-database"],
)
class TestRefusedByTheDatabase:
    async def test_readyz_is_503_and_says_why(
        self, database_url: str, broken_url: Callable[[str], str], expected: str
    ) -> None:
        async with started(broken_url(database_url)) as (http, _):
            response = await http.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "5"
        problem = response.json()
        assert problem["code"] == "not_ready"
        assert expected in problem["detail"]
        assert "ALLEGRO_LINK_DATABASE_URL" in problem["detail"]

    async def test_start_up_says_so_in_one_line(
        self, database_url: str, broken_url: Callable[[str], str], expected: str
    ) -> None:
        async with started(broken_url(database_url)) as (http, startup):
            assert (await http.get("/healthz")).status_code == 200  # it starts anyway
        (line,) = [line for line in startup if line["event"] == "app.database_unavailable"]
        assert line["level"] == "error"
        assert expected in str(line["detail"])

    async def test_every_route_answers_503_not_500(
        self, database_url: str, broken_url: Callable[[str], str], expected: str
    ) -> None:
        with captured_logs() as sink:
            async with lifespan(create_app(make_settings(broken_url(database_url)))) as manager:
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                    listing = await http.get("/accounts", headers=bearer(owner_token("owner-a")))
        assert listing.status_code == 503
        assert listing.headers["content-type"] == "application/problem+json"
        assert listing.json()["code"] == "database_unavailable"
        assert "ALLEGRO_LINK_DATABASE_URL" not in listing.text  # the reason is for the operator's log
        logged = [json.loads(line) for line in sink.getvalue().splitlines() if line.startswith("{")]
        (refused,) = [line for line in logged if line["event"] == "db.refused"]
        assert expected in str(refused["detail"])


class TestDescribeRefusal:
    def test_a_wrong_password_is_named(self) -> None:
        # The machine's PostgreSQL trusts loopback, so a wrong password cannot be provoked there: this
        # is asyncpg's exception for it, wrapped as SQLAlchemy wraps it.
        wrapped = DBAPIError("connect", None, asyncpg.exceptions.InvalidPasswordError("password failed"))
        description = describe_refusal(wrapped)
        assert description is not None
        assert "refused the login (wrong password)" in description

    def test_other_failures_are_not_refusals(self) -> None:
        assert describe_refusal(ConnectionRefusedError()) is None
        assert (
            describe_refusal(DBAPIError("select", None, asyncpg.exceptions.UndefinedTableError("x"))) is None
        )


async def test_a_healthy_database_logs_no_such_line(database_url: str) -> None:
    async with started(database_url) as (http, startup):
        assert (await http.get("/readyz")).status_code == 200
    assert not [line for line in startup if line["event"] == "app.database_unavailable"]
