"""The bench's seeding and request lists (bench/seed.py, bench/phases.py), without a database or wrk."""

from __future__ import annotations

import base64
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from allegro_link.accounts.models import Account
from allegro_link.crypto.keys import DecryptionError, KeyRing
from allegro_link.crypto.vault import TokenVault
from allegro_link.db import uuid7
from allegro_link.settings import parse_encryption_keys

# The bench's modules import each other as top-level modules (bench/ is their sys.path[0]). Appended, so
# that they shadow nothing installed (none of their names is taken there).
sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))
import phases
import seed

KEYS = "bench1:" + base64.b64encode(b"b" * 32).decode()


def _claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return claims


def test_each_row_is_sealed_for_its_own_id_with_allegro_shaped_tokens() -> None:
    vault = TokenVault(KeyRing(parse_encryption_keys(KEYS)))
    ids = [uuid7() for _ in range(3)]
    rows = list(seed._rows(KEYS, datetime.now(UTC), 40, ids))
    columns = seed.COLUMNS
    for index, (account_id, row) in enumerate(zip(ids, rows, strict=True), start=40):
        record = dict(zip(columns, row, strict=True))
        assert record["id"] == account_id
        assert record["owner_id"] == seed.owner_of(index)
        access_blob = record["access_token_ciphertext"]
        refresh_blob = record["refresh_token_ciphertext"]
        assert isinstance(access_blob, bytes)
        assert isinstance(refresh_blob, bytes)
        access = vault.open(Account.access_token_ciphertext, account_id, access_blob)
        refresh = vault.open(Account.refresh_token_ciphertext, account_id, refresh_blob)
        assert 1400 < len(access) < 1700
        assert _claims(access)["user_name"] == str(40_000_000 + index)
        assert _claims(refresh)["ati"] == _claims(access)["jti"]
        assert len(base64.urlsafe_b64decode(access.split(".")[2] + "==")) == seed.SIGNATURE_BYTES
    # A blob does not open for another row.
    first = rows[0][columns.index("access_token_ciphertext")]
    assert isinstance(first, bytes)
    with pytest.raises(DecryptionError):
        vault.open(Account.access_token_ciphertext, ids[1], first)


def test_request_lists_have_lines_of_one_length(tmp_path: Path) -> None:
    path = phases.write_requests(tmp_path / "list.txt", ["/a\tkey", "/accounts/1/token\tkey", "/b\tk"])
    lines = path.read_bytes().split(b"\n")[:-1]
    assert len({len(line) for line in lines}) == 1
    assert [line.rstrip() for line in lines] == [b"/a\tkey", b"/accounts/1/token\tkey", b"/b\tk"]


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([1000, 10_000, 100_000, 1_000_000], 100_000),
        ([1000, 10_000], 10_000),
        ([200_000, 1_000_000], 200_000),
    ],
)
def test_the_owner_listing_runs_at_the_largest_size_up_to_the_limit(sizes: list[int], expected: int) -> None:
    assert phases.listing_size(sizes, 100_000) == expected
