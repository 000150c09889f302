from __future__ import annotations

import asyncio
import hashlib
import random
import re
import string
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from allegro_link.auth.api_keys import (
    ApiKeyError,
    ApiKeyVerifier,
    ServicePrincipal,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from allegro_link.auth.models import ApiKey
from allegro_link.db import create_engine, create_sessionmaker
from tests.support.clock import FakeClock
from tests.support.factories import make_settings
from tests.support.statements import QueryCounter, counting
from tests.support.waiting import until

KEY_SHAPE = re.compile(r"alk_([A-Za-z0-9]{12})_[A-Za-z0-9_-]{43}_[A-Za-z0-9]{6}")
ALPHABET = string.ascii_letters + string.digits
SECRET_ALPHABET = ALPHABET + "-_"


def _random_key(rng: random.Random, *, check: bool) -> str:
    prefix = "".join(rng.choice(ALPHABET) for _ in range(12))
    secret = "".join(rng.choice(SECRET_ALPHABET) for _ in range(43))
    key = f"alk_{prefix}_{secret}"
    return f"{key}_{''.join(rng.choice(ALPHABET) for _ in range(6))}" if check else key


async def _insert_first_format_key(sessionmaker: async_sessionmaker[AsyncSession], key: str) -> None:
    """A key as the first format made them (alk_<prefix>_<secret>), stored as `create_api_key` stored it."""
    async with sessionmaker.begin() as session:
        session.add(
            ApiKey(
                name=f"old-{key[4:16]}",
                prefix=key[4:16],
                secret_hash=hashlib.sha256(key.encode()).digest(),
                scopes=["tokens:read"],
            )
        )


@pytest.fixture
def queries(engine: AsyncEngine) -> Iterator[QueryCounter]:
    """The statements that reach PostgreSQL for the api_keys table."""
    with counting(engine, lambda statement: "api_keys" in statement) as counter:
        yield counter


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(sessionmaker: async_sessionmaker[AsyncSession], clock: FakeClock) -> ApiKeyVerifier:
    return ApiKeyVerifier(sessionmaker, cache_ttl_seconds=30, negative_ttl_seconds=5, clock=clock)


async def _create(sessionmaker: async_sessionmaker[AsyncSession], name: str, *scopes: str) -> str:
    async with sessionmaker.begin() as session:
        return await create_api_key(session, name=name, scopes=scopes or ("tokens:read",))


async def _revoke(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> bool:
    async with sessionmaker.begin() as session:
        return await revoke_api_key(session, name)


async def _rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[ApiKey]:
    async with sessionmaker() as session:
        return await list_api_keys(session)


class TestCreateApiKey:
    async def test_a_new_key_verifies_with_its_name_and_scopes(
        self, sessionmaker: async_sessionmaker[AsyncSession], verifier: ApiKeyVerifier
    ) -> None:
        key = await _create(sessionmaker, "billing", "tokens:read", "accounts:read")

        principal = await verifier.verify(key)

        (row,) = await _rows(sessionmaker)
        assert principal == ServicePrincipal(
            key_id=row.id, name="billing", scopes=frozenset({"tokens:read", "accounts:read"})
        )
        assert principal.has_scope("tokens:read")
        assert principal.has_scope("accounts:read")

    async def test_a_key_has_only_the_scopes_it_was_given(
        self, sessionmaker: async_sessionmaker[AsyncSession], verifier: ApiKeyVerifier
    ) -> None:
        key = await _create(sessionmaker, "reporting", "accounts:read")

        principal = await verifier.verify(key)

        assert principal is not None
        assert principal.has_scope("accounts:read")
        assert not principal.has_scope("tokens:read")

    async def test_only_a_hash_of_the_key_is_stored(
        self, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
    ) -> None:
        key = await _create(sessionmaker, "billing")

        match = KEY_SHAPE.fullmatch(key)
        assert match is not None
        (row,) = await _rows(sessionmaker)
        assert row.prefix == match.group(1)
        assert row.secret_hash == hashlib.sha256(key.encode()).digest()
        secret = key[17:]
        async with engine.connect() as connection:
            stored = await connection.scalar(text("SELECT row_to_json(api_keys)::text FROM api_keys"))
        assert stored is not None
        assert key not in stored
        assert secret not in stored

    async def test_every_key_is_different(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        keys = [await _create(sessionmaker, f"service-{n}") for n in range(20)]

        assert len(set(keys)) == 20
        assert len({key[4:16] for key in keys}) == 20

    @pytest.mark.parametrize(
        "name", ["", "x" * 101, " padded", "padded ", "tab\tname", "new\nline", "nul\x00"]
    )
    async def test_a_bad_name_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession], name: str
    ) -> None:
        with pytest.raises(ApiKeyError, match="printable"):
            await _create(sessionmaker, name)

        assert await _rows(sessionmaker) == []

    @pytest.mark.parametrize(
        ("scopes", "message"),
        [
            ([], "at least one scope"),
            (["tokens:write"], "unknown scope 'tokens:write'"),
            (["tokens:read", "admin"], "unknown scope 'admin'"),
        ],
    )
    async def test_scopes_must_be_known_and_not_empty(
        self, sessionmaker: async_sessionmaker[AsyncSession], scopes: list[str], message: str
    ) -> None:
        async with sessionmaker.begin() as session:
            with pytest.raises(ApiKeyError, match=message):
                await create_api_key(session, name="billing", scopes=scopes)

        assert await _rows(sessionmaker) == []

    async def test_a_name_in_use_is_refused(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        await _create(sessionmaker, "billing")

        with pytest.raises(ApiKeyError, match="an API key named 'billing' already exists"):
            await _create(sessionmaker, "billing")

        assert len(await _rows(sessionmaker)) == 1

    async def test_the_name_of_a_revoked_key_is_not_reused(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await _create(sessionmaker, "billing")
        await _revoke(sessionmaker, "billing")

        with pytest.raises(ApiKeyError, match=r"was revoked on .*names are not reused"):
            await _create(sessionmaker, "billing")

    async def test_concurrent_creates_of_one_name_make_one_key(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        results = await asyncio.gather(
            *(_create(sessionmaker, "billing") for _ in range(5)), return_exceptions=True
        )

        assert sum(isinstance(r, str) for r in results) == 1
        assert sum(isinstance(r, ApiKeyError) for r in results) == 4
        assert len(await _rows(sessionmaker)) == 1


class TestListAndRevoke:
    async def test_list_shows_every_key_oldest_first_with_revocations(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await _create(sessionmaker, "billing", "tokens:read")
        await _create(sessionmaker, "reporting", "accounts:read")
        assert await _revoke(sessionmaker, "billing")

        rows = await _rows(sessionmaker)

        assert [(r.name, r.scopes, r.revoked_at is not None) for r in rows] == [
            ("billing", ["tokens:read"], True),
            ("reporting", ["accounts:read"], False),
        ]

    async def test_revoking_an_unknown_or_revoked_name_reports_false(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await _create(sessionmaker, "billing")

        assert await _revoke(sessionmaker, "nobody") is False
        assert await _revoke(sessionmaker, "billing") is True
        assert await _revoke(sessionmaker, "billing") is False


class TestVerify:
    async def test_the_right_prefix_with_a_wrong_secret_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession], verifier: ApiKeyVerifier
    ) -> None:
        key = await _create(sessionmaker, "billing")
        wrong = key[:17] + ("A" if key[17] != "A" else "B") + key[18:]

        assert await verifier.verify(wrong) is None
        assert await verifier.verify(key) is not None
        assert await verifier.verify(wrong) is None

    async def test_a_well_formed_key_nobody_created_is_refused(self, verifier: ApiKeyVerifier) -> None:
        assert await verifier.verify("alk_AAAAAAAAAAAA_" + "A" * 43) is None

    async def test_a_revoked_key_is_refused_once_the_cache_ttl_has_passed(
        self, sessionmaker: async_sessionmaker[AsyncSession], verifier: ApiKeyVerifier, clock: FakeClock
    ) -> None:
        key = await _create(sessionmaker, "billing")
        assert await verifier.verify(key) is not None

        await _revoke(sessionmaker, "billing")

        # The documented revocation delay: a replica that checked the key recently keeps accepting it.
        clock.advance(29)
        assert await verifier.verify(key) is not None
        clock.advance(2)
        assert await verifier.verify(key) is None

    async def test_a_key_in_use_is_read_again_in_the_background_before_its_entry_expires(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        verifier: ApiKeyVerifier,
        queries: QueryCounter,
        clock: FakeClock,
    ) -> None:
        key = await _create(sessionmaker, "billing")
        assert await verifier.verify(key) is not None
        await _revoke(sessionmaker, "billing")
        queries.count = 0

        # Past 80 % of the TTL: answered from the entry at once, which is read again meanwhile...
        clock.advance(25)
        assert await verifier.verify(key) is not None

        async def refused() -> bool:
            return await verifier.verify(key) is None

        # ...so the revocation is seen before the entry would have expired, by one lookup in all.
        await until(refused, within=10, what="the background lookup to see the revocation")
        assert queries.count == 1

    async def test_a_revoked_key_is_refused_at_once_by_a_replica_that_had_not_cached_it(
        self, sessionmaker: async_sessionmaker[AsyncSession], verifier: ApiKeyVerifier
    ) -> None:
        key = await _create(sessionmaker, "billing")
        await _revoke(sessionmaker, "billing")

        assert await verifier.verify(key) is None

    async def test_a_hundred_verifications_cost_one_query(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        verifier: ApiKeyVerifier,
        queries: QueryCounter,
        clock: FakeClock,
    ) -> None:
        key = await _create(sessionmaker, "billing")
        queries.count = 0

        for _ in range(100):
            assert await verifier.verify(key) is not None
            clock.advance(0.1)

        assert queries.count == 1
        clock.advance(30)
        assert await verifier.verify(key) is not None
        assert queries.count == 2

    async def test_concurrent_verifications_of_an_uncached_key_share_one_query(
        self, sessionmaker: async_sessionmaker[AsyncSession], verifier: ApiKeyVerifier, queries: QueryCounter
    ) -> None:
        key = await _create(sessionmaker, "billing")
        queries.count = 0

        principals = await asyncio.gather(*(verifier.verify(key) for _ in range(50)))

        assert all(p is not None and p.name == "billing" for p in principals)
        assert queries.count == 1

    async def test_unknown_prefixes_are_remembered_briefly(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        verifier: ApiKeyVerifier,
        queries: QueryCounter,
        clock: FakeClock,
    ) -> None:
        made_up = "alk_AAAAAAAAAAAA_" + "A" * 43

        for _ in range(100):
            assert await verifier.verify(made_up) is None
        assert queries.count == 1

        clock.advance(5.1)
        assert await verifier.verify(made_up) is None
        assert queries.count == 2

    async def test_a_key_created_after_a_miss_is_accepted_once_the_miss_expires(
        self, sessionmaker: async_sessionmaker[AsyncSession], verifier: ApiKeyVerifier, clock: FakeClock
    ) -> None:
        key = "alk_BBBBBBBBBBBB_" + "C" * 43
        assert await verifier.verify(key) is None
        async with sessionmaker.begin() as session:
            session.add(
                ApiKey(
                    name="billing",
                    prefix="BBBBBBBBBBBB",
                    secret_hash=hashlib.sha256(key.encode()).digest(),
                    scopes=["tokens:read"],
                )
            )

        assert await verifier.verify(key) is None
        clock.advance(5.1)
        assert await verifier.verify(key) is not None

    @pytest.mark.parametrize(
        "presented",
        [
            "",
            "alk_",
            "alk_short_secret",
            "ALK_AAAAAAAAAAAA_" + "A" * 43,
            "alk_AAAAAAAAAAAA_" + "A" * 42,
            "alk_AAAAAAAAAAAA_" + "A" * 44,
            "alk_AAAAAAAAAA-A_" + "A" * 43,
            "alk_AAAAAAAAAAAA_" + "A" * 42 + "ą",
            "alk_AAAAAAAAAAAA_" + "A" * 42 + "=",
            "alk_AAAAAAAAAAAA " + "A" * 43,
            "alk_AAAAAAAAAAAA_" + "A" * 43 + "\n",
            "alk_" + "A" * 10_000,
            "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        ],
    )
    async def test_malformed_keys_are_refused_without_a_query(
        self, verifier: ApiKeyVerifier, queries: QueryCounter, presented: str
    ) -> None:
        assert await verifier.verify(presented) is None
        assert queries.count == 0

    async def test_the_cache_is_bounded_least_recently_used_first(
        self, sessionmaker: async_sessionmaker[AsyncSession], queries: QueryCounter
    ) -> None:
        verifier = ApiKeyVerifier(sessionmaker, max_entries=2)
        first, second, third = [await _create(sessionmaker, f"service-{n}") for n in range(3)]
        for key in (first, second, first, third):  # `second` is now the least recently used
            assert await verifier.verify(key) is not None
        queries.count = 0

        assert await verifier.verify(first) is not None
        assert await verifier.verify(third) is not None
        assert queries.count == 0
        assert await verifier.verify(second) is not None
        assert queries.count == 1

    async def test_made_up_prefixes_do_not_evict_real_keys(
        self, sessionmaker: async_sessionmaker[AsyncSession], queries: QueryCounter
    ) -> None:
        verifier = ApiKeyVerifier(sessionmaker, max_entries=2)
        key = await _create(sessionmaker, "billing")
        assert await verifier.verify(key) is not None
        for n in range(5):
            assert await verifier.verify(f"alk_AAAAAAAAAAA{n}_" + "A" * 43) is None
        queries.count = 0

        assert await verifier.verify(key) is not None
        assert queries.count == 0


class TestForgedKeys:
    """A key that cannot be genuine is refused without asking the database."""

    async def test_made_up_keys_of_the_current_format_cost_no_query(
        self, sessionmaker: async_sessionmaker[AsyncSession], verifier: ApiKeyVerifier, queries: QueryCounter
    ) -> None:
        genuine = await _create(sessionmaker, "billing")
        queries.count = 0
        rng = random.Random(10)  # fixed: each of these fails its check for certain

        for _ in range(1000):
            assert await verifier.verify(_random_key(rng, check=True)) is None
        assert queries.count == 0
        assert await verifier.verify(genuine) is not None
        assert queries.count == 1

    async def test_any_one_character_changed_fails_the_check_without_a_query(
        self, sessionmaker: async_sessionmaker[AsyncSession], verifier: ApiKeyVerifier, queries: QueryCounter
    ) -> None:
        key = await _create(sessionmaker, "billing")
        queries.count = 0
        for position in range(len("alk_"), len(key)):
            if key[position] == "_":
                continue
            changed = key[:position] + ("B" if key[position] == "A" else "A") + key[position + 1 :]
            assert await verifier.verify(changed) is None, position
        assert queries.count == 0

    async def test_made_up_keys_of_the_first_format_cost_one_query_per_interval(
        self, verifier: ApiKeyVerifier, queries: QueryCounter, clock: FakeClock
    ) -> None:
        rng = random.Random(11)

        await asyncio.gather(*(verifier.verify(_random_key(rng, check=False)) for _ in range(50)))
        for _ in range(950):
            assert await verifier.verify(_random_key(rng, check=False)) is None
        assert queries.count == 1  # the set of existing prefixes, read once
        clock.advance(5.1)
        for _ in range(100):
            assert await verifier.verify(_random_key(rng, check=False)) is None
        assert queries.count == 2

    async def test_keys_of_the_first_format_keep_working(
        self, sessionmaker: async_sessionmaker[AsyncSession], verifier: ApiKeyVerifier
    ) -> None:
        old = _random_key(random.Random(12), check=False)
        await _insert_first_format_key(sessionmaker, old)

        principal = await verifier.verify(old)
        assert principal is not None and principal.name == f"old-{old[4:16]}"
        assert await verifier.verify(old[:-1] + ("A" if old[-1] != "A" else "B")) is None

    async def test_with_the_database_down_made_up_keys_are_still_refused(self) -> None:
        # Nothing listens on port 1: any query would fail, so a refusal here touched no database.
        engine = create_engine(make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/none"))
        try:
            verifier = ApiKeyVerifier(create_sessionmaker(engine))
            rng = random.Random(13)
            for _ in range(100):
                assert await verifier.verify(_random_key(rng, check=True)) is None
        finally:
            await engine.dispose()
