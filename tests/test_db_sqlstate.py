"""Reading an error's SQLSTATE, wherever SQLAlchemy and asyncpg put it."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, OperationalError

from allegro_link.db import is_lock_timeout, sqlstate


class _Adapted(Exception):
    """Like SQLAlchemy's asyncpg adapter error: it copies the driver's code onto itself."""

    def __init__(self, driver_error: asyncpg.PostgresError) -> None:
        super().__init__(f"{type(driver_error)}: {driver_error}")
        self.sqlstate = self.pgcode = driver_error.sqlstate
        self.__cause__ = driver_error


def _as_sqlalchemy_raises_it(driver_error: asyncpg.PostgresError) -> DBAPIError:
    """asyncpg's error as it reaches our code: translated by SQLAlchemy's adapter, then wrapped."""
    return OperationalError("SELECT 1", None, _Adapted(driver_error))


class TestSqlstate:
    def test_a_wrapped_driver_error_gives_its_code(self) -> None:
        wrapped = _as_sqlalchemy_raises_it(asyncpg.exceptions.LockNotAvailableError("lock timeout"))
        assert sqlstate(wrapped) == "55P03"
        assert is_lock_timeout(wrapped)

    def test_the_code_is_found_in_the_cause_when_the_adapter_has_none(self) -> None:
        adapted = Exception("adapted without a code")
        adapted.__cause__ = asyncpg.exceptions.QueryCanceledError("statement timeout")
        assert sqlstate(DBAPIError("SELECT 1", None, adapted)) == "57014"

    def test_the_bare_driver_error_gives_its_code(self) -> None:
        assert sqlstate(asyncpg.exceptions.InvalidPasswordError("password failed")) == "28P01"

    def test_errors_without_a_code(self) -> None:
        assert sqlstate(ConnectionRefusedError()) is None
        assert sqlstate(DBAPIError("SELECT 1", None, Exception("no code"))) is None
        assert not is_lock_timeout(_as_sqlalchemy_raises_it(asyncpg.exceptions.QueryCanceledError("x")))
