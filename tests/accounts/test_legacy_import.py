from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from allegro_link.accounts.events import EventType
from allegro_link.accounts.legacy_import import ImportReport, LegacyImportError, import_legacy_accounts
from allegro_link.accounts.models import Account, AccountEvent, AccountStatus, ReloginReason
from allegro_link.settings import Settings
from tests.support.accounts import insert_account


def _csv(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "legacy.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


async def _accounts(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Account]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Account).order_by(Account.owner_id, Account.login)))


async def _events(sessionmaker: async_sessionmaker[AsyncSession]) -> list[AccountEvent]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(AccountEvent).order_by(AccountEvent.id)))


async def _refused(sessionmaker: async_sessionmaker[AsyncSession], path: Path) -> LegacyImportError:
    with pytest.raises(LegacyImportError) as caught:
        await import_legacy_accounts(sessionmaker, path)
    return caught.value


class TestImportLegacy:
    async def test_every_row_becomes_a_legacy_account_that_needs_a_login(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        path = _csv(tmp_path, "owner_id,login\nowner-a,Sklep_Jan\nowner-a,drugi-sklep\nowner-b,Sklep_Jan\n")

        report = await import_legacy_accounts(sessionmaker, path)

        assert report == ImportReport(imported=3, skipped=0)
        accounts = await _accounts(sessionmaker)
        assert [(a.owner_id, a.login) for a in accounts] == [
            ("owner-a", "Sklep_Jan"),
            ("owner-a", "drugi-sklep"),
            ("owner-b", "Sklep_Jan"),
        ]
        for account in accounts:
            assert account.allegro_user_id is None
            assert account.status is AccountStatus.RELOGIN_REQUIRED
            assert account.relogin_reason is ReloginReason.LEGACY_ACCOUNT
            assert account.status_changed_at is not None
            assert account.linked_at is None
            assert account.access_token_ciphertext is None
            assert account.refresh_token_ciphertext is None
        events = await _events(sessionmaker)
        assert sorted(e.account_id for e in events) == sorted(a.id for a in accounts)
        for event in events:
            assert event.type == EventType.IMPORTED
            assert event.actor == "cli:import-legacy"
            assert (event.account["status"], event.account["relogin_reason"]) == (
                "relogin_required",
                "legacy_account",
            )

    async def test_running_the_same_file_again_skips_every_row(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        path = _csv(tmp_path, "owner_id,login\nowner-a,Sklep_Jan\nowner-b,inny\n")
        await import_legacy_accounts(sessionmaker, path)

        report = await import_legacy_accounts(sessionmaker, path)

        assert report == ImportReport(imported=0, skipped=2)
        assert len(await _accounts(sessionmaker)) == 2
        assert len(await _events(sessionmaker)) == 2

    async def test_a_login_the_owner_already_has_is_skipped_ignoring_case(
        self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, tmp_path: Path
    ) -> None:
        linked = await insert_account(settings, owner_id="owner-a", login="Sklep_Jan", allegro_user_id="4242")
        await import_legacy_accounts(sessionmaker, _csv(tmp_path, "owner_id,login\nowner-a,Legacy-One\n"))
        path = _csv(
            tmp_path,
            "owner_id,login\nowner-a,SKLEP_JAN\nowner-a,legacy-one\nowner-b,sklep_jan\nowner-a,nowy\n",
        )

        report = await import_legacy_accounts(sessionmaker, path)

        assert report == ImportReport(imported=2, skipped=2)
        accounts = await _accounts(sessionmaker)
        assert sorted((a.owner_id, a.login) for a in accounts) == [
            ("owner-a", "Legacy-One"),
            ("owner-a", "Sklep_Jan"),
            ("owner-a", "nowy"),
            ("owner-b", "sklep_jan"),
        ]
        # The linked account is untouched.
        kept = next(a for a in accounts if a.id == linked.id)
        assert (kept.status, kept.allegro_user_id) == (AccountStatus.ACTIVE, "4242")

    async def test_bom_crlf_blank_lines_and_surrounding_spaces_are_tolerated(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        content = '\ufeffowner_id,login\r\n  owner-a ,  Sklep Jana  \r\n\r\n"owner-b","x,y"\r\n'
        path = _csv(tmp_path, content.encode("utf-8"))

        report = await import_legacy_accounts(sessionmaker, path)

        assert report.imported == 2
        assert [(a.owner_id, a.login) for a in await _accounts(sessionmaker)] == [
            ("owner-a", "Sklep Jana"),
            ("owner-b", "x,y"),
        ]

    async def test_a_header_only_file_imports_nothing(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        report = await import_legacy_accounts(sessionmaker, _csv(tmp_path, "owner_id,login\r\n"))

        assert report == ImportReport(imported=0, skipped=0)

    async def test_a_large_file_is_imported_whole(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        lines = "".join(f"owner-{n % 7},seller-{n}\n" for n in range(2500))
        path = _csv(tmp_path, "owner_id,login\n" + lines)

        assert await import_legacy_accounts(sessionmaker, path) == ImportReport(imported=2500, skipped=0)
        assert await import_legacy_accounts(sessionmaker, path) == ImportReport(imported=0, skipped=2500)

    async def test_concurrent_imports_of_one_file_create_each_account_once(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        path = _csv(tmp_path, "owner_id,login\n" + "".join(f"owner-a,seller-{n}\n" for n in range(50)))

        reports = await asyncio.gather(*(import_legacy_accounts(sessionmaker, path) for _ in range(4)))

        assert sum(r.imported for r in reports) == 50
        assert all(r.imported + r.skipped == 50 for r in reports)
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Account)) == 50
            assert await session.scalar(select(func.count()).select_from(AccountEvent)) == 50


class TestImportLegacyRefusals:
    async def test_every_bad_row_is_reported_with_its_line_and_nothing_is_written(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        long_login = "x" * 201
        content = (
            "owner_id,login\n"  # 1
            "owner-a,good\n"  # 2
            ",missing-owner\n"  # 3
            "owner-a,\n"  # 4
            f"owner-a,{long_login}\n"  # 5
            "owner-a,nul\x00inside\n"  # 6
            "owner-a,tab\tinside\n"  # 7
            "owner-a,one,too-many\n"  # 8
            "lonely\n"  # 9
            "owner-a,GOOD\n"  # 10
            "owner-b,zero\u200bwidth\n"  # 11
            "owner-c,also-good\n"  # 12
        )

        error = await _refused(sessionmaker, _csv(tmp_path, content))

        assert error.problems == [
            "line 3: owner_id is empty",
            "line 4: login is empty",
            "line 5: login is longer than 200 characters (201)",
            "line 6: login contains control or invisible characters: 'nul\\x00inside'",
            "line 7: login contains control or invisible characters: 'tab\\tinside'",
            "line 8: expected 2 columns (owner_id,login), got 3",
            "line 9: expected 2 columns (owner_id,login), got 1",
            "line 10: owner_id 'owner-a' with login 'GOOD' repeats line 2 (logins compare ignoring case)",
            "line 11: login contains control or invisible characters: 'zero\\u200bwidth'",
        ]
        report = str(error).splitlines()
        assert report[0] == "legacy import refused, nothing was imported (9 problems):"
        assert report[1] == "  line 3: owner_id is empty"
        assert await _accounts(sessionmaker) == []
        assert await _events(sessionmaker) == []

    async def test_a_wrong_header_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        error = await _refused(sessionmaker, _csv(tmp_path, "owner,login\nowner-a,x\n"))

        assert error.problems == ["line 1: the header must be owner_id,login, got ['owner', 'login']"]
        assert await _accounts(sessionmaker) == []

    async def test_a_file_without_a_header_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        error = await _refused(sessionmaker, _csv(tmp_path, "owner-a,Sklep_Jan\n"))

        assert error.problems[0].startswith("line 1: the header must be owner_id,login")

    async def test_an_empty_file_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        error = await _refused(sessionmaker, _csv(tmp_path, ""))

        assert error.problems == ["line 1: the file is empty; it must start with the header owner_id,login"]

    async def test_a_file_that_is_not_utf8_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        error = await _refused(
            sessionmaker, _csv(tmp_path, "owner_id,login\nowner-a,Gżegżółka\n".encode("cp1250"))
        )

        assert error.problems == ["line 2: the file is not UTF-8 text"]

    async def test_malformed_quoting_is_reported_and_later_rows_are_still_checked(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        content = 'owner_id,login\nowner-a,"broken"quote\nowner-a,\n'

        error = await _refused(sessionmaker, _csv(tmp_path, content))

        assert error.problems == [
            "line 2: malformed CSV (',' expected after '\"')",
            "line 3: login is empty",
        ]

    async def test_a_missing_file_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        error = await _refused(sessionmaker, tmp_path / "nope.csv")

        assert error.problems == [f"cannot read {tmp_path / 'nope.csv'}: No such file or directory"]
