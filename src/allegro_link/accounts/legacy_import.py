"""`allegro-link accounts import-legacy FILE.csv`: accounts from the old login system.

The file has the header line `owner_id,login` (a UTF-8 BOM and CRLF line ends are fine; blank lines are
ignored). Every row becomes an account in `relogin_required` / `legacy_account`, so its owner is asked
to log in to Allegro once; `/oauth/complete` then attaches the login to this account.

All rows or none: the whole file is checked first and every problem reported with its line number.
A row whose owner already has an account with that login (ignoring case; legacy or linked) is
skipped, so the import can be run again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import String, column, func, select, text, values
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.accounts import transitions
from allegro_link.accounts.models import Account
from allegro_link.db import utcnow, uuid7

log = structlog.get_logger(__name__)

HEADER = ("owner_id", "login")
OWNER_ID_MAX_LENGTH = 200
LOGIN_MAX_LENGTH = 200
ACTOR = "cli:import-legacy"
# Rows per INSERT statement (asyncpg allows at most 32767 bind parameters per statement).
_INSERT_CHUNK = 1000
# Unicode categories refused in values: controls (NUL included), format characters (zero-width
# and direction marks), private use, unassigned, and line/paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"})


class LegacyImportError(Exception):
    """The file cannot be imported; nothing was written. `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        heading = f"legacy import refused, nothing was imported ({count} problem{'s' if count != 1 else ''}):"
        return "\n".join([heading, *(f"  {problem}" for problem in self.problems)])


@dataclass(frozen=True, slots=True)
class LegacyRow:
    line: int
    owner_id: str
    login: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    imported: int
    skipped: int


async def import_legacy_accounts(sessionmaker: async_sessionmaker[AsyncSession], path: Path) -> ImportReport:
    """Import the CSV at `path` in one transaction; raises `LegacyImportError` when any row is bad."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise LegacyImportError([f"cannot read {path}: {exc.strerror or exc}"]) from None
    rows = parse_legacy_csv(data)
    async with sessionmaker.begin() as session:
        imported = await _insert_new(session, rows)
    report = ImportReport(imported=imported, skipped=len(rows) - imported)
    log.info("accounts.legacy_import.finished", imported=report.imported, skipped=report.skipped)
    return report


def parse_legacy_csv(data: bytes) -> list[LegacyRow]:
    """Every row of the file, or `LegacyImportError` listing every problem found."""
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LegacyImportError([f"line {line}: the file is not UTF-8 text"]) from None
    problems: list[str] = []
    rows: list[LegacyRow] = []
    first_seen: dict[tuple[str, str], int] = {}
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    header_line: int | None = None
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The reader resumes at the next line, so later problems are still reported.
            problems.append(f"line {reader.line_num}: malformed CSV ({exc})")
            continue
        line = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # blank line
        if header_line is None:
            header_line = line
            if tuple(value.strip() for value in record) != HEADER:
                problems.append(f"line {line}: the header must be {','.join(HEADER)}, got {_show(record)}")
            continue
        row = _check_row(line, record, problems)
        if row is None:
            continue
        key = (row.owner_id, row.login.lower())
        if key in first_seen:
            problems.append(
                f"line {line}: owner_id {row.owner_id!r} with login {row.login!r} repeats line "
                f"{first_seen[key]} (logins compare ignoring case)"
            )
            continue
        first_seen[key] = line
        rows.append(row)
    if header_line is None and not problems:
        problems.append(f"line 1: the file is empty; it must start with the header {','.join(HEADER)}")
    if problems:
        raise LegacyImportError(problems)
    return rows


def _check_row(line: int, record: list[str], problems: list[str]) -> LegacyRow | None:
    if len(record) != len(HEADER):
        problems.append(f"line {line}: expected {len(HEADER)} columns (owner_id,login), got {len(record)}")
        return None
    owner_id, login = (value.strip() for value in record)
    found = [
        *_check_value(line, "owner_id", owner_id, OWNER_ID_MAX_LENGTH),
        *_check_value(line, "login", login, LOGIN_MAX_LENGTH),
    ]
    problems.extend(found)
    return None if found else LegacyRow(line=line, owner_id=owner_id, login=login)


def _check_value(line: int, name: str, value: str, max_length: int) -> Iterable[str]:
    if not value:
        yield f"line {line}: {name} is empty"
    elif len(value) > max_length:
        yield f"line {line}: {name} is longer than {max_length} characters ({len(value)})"
    if any(unicodedata.category(char) in _REFUSED_CATEGORIES for char in value):
        yield f"line {line}: {name} contains control or invisible characters: {_show(value)}"


def _show(value: object, limit: int = 80) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


async def _insert_new(session: AsyncSession, rows: list[LegacyRow]) -> int:
    present = await _present(session, rows)
    now = utcnow()
    pending = [row for row in rows if (row.owner_id, row.login.lower()) not in present]
    imported = 0
    for start in range(0, len(pending), _INSERT_CHUNK):
        chunk = {
            account_id: transitions.legacy_account_row(
                account_id=account_id, owner_id=row.owner_id, login=row.login, now=now
            )
            for account_id, row in ((uuid7(), row) for row in pending[start : start + _INSERT_CHUNK])
        }
        statement = (
            insert(Account)
            .values(list(chunk.values()))
            # A legacy account that appeared meanwhile (a concurrent import) wins; ours is skipped.
            .on_conflict_do_nothing(
                index_elements=[Account.owner_id, func.lower(Account.login)],
                index_where=text("allegro_user_id IS NULL"),
            )
            .returning(Account.id)
        )
        created = [chunk[account_id] for account_id in (await session.scalars(statement)).all()]
        await transitions.imported(session, created, actor=ACTOR)
        imported += len(created)
    return imported


async def _present(session: AsyncSession, rows: list[LegacyRow]) -> set[tuple[str, str]]:
    """(owner_id, lowercased login) of the rows whose owner already has an account with that login."""
    present: set[tuple[str, str]] = set()
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        wanted = values(column("owner_id", String), column("login", String), name="wanted").data(
            [(row.owner_id, row.login) for row in chunk]
        )
        existing = select(Account.id).where(
            Account.owner_id == wanted.c.owner_id, func.lower(Account.login) == func.lower(wanted.c.login)
        )
        query = select(wanted.c.owner_id, wanted.c.login).where(existing.exists())
        present.update((owner_id, login.lower()) for owner_id, login in (await session.execute(query)).all())
    return present
