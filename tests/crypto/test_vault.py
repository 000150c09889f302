"""The vault binds each blob to its table, row and column, named by the mapped column."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import LargeBinary, column

from allegro_link.crypto.keys import DecryptionError, KeyRing
from allegro_link.crypto.rotate import SEALED_COLUMNS
from allegro_link.crypto.vault import SealedColumn, TokenVault, column_binding
from allegro_link.models import Account, Base, LinkSession, WebhookEndpoint
from allegro_link.settings import parse_encryption_keys
from tests.support.factories import ENCRYPTION_KEY

ROW = uuid.UUID("0190a0b0-c0d0-7e0f-8a1b-2c3d4e5f6071")

# Sealed under ENCRYPTION_KEY for ROW, plaintext "<table>.<column>", by the vault as it was when callers
# named the table and column as strings (`vault.seal("accounts", row, "access_token_ciphertext", …)`).
# Blobs like these are in databases: they must open for as long as the format is version 1.
SEALED_BY_NAME: dict[SealedColumn, str] = {
    Account.access_token_ciphertext: "01027431ca0b28769aa4832c1659fa7e656738c449ff1fc786186efa1f7a16006b77f3"
    "691af7e5b4c4ab6ce659dc1be3d825f596e5fddc35e1818bf35ba82099",
    Account.refresh_token_ciphertext: "010274310578b422d1f8b039e78807c726bbf32d09963de6a75bbbbfea9e107f3bc2"
    "918100c9c33275891765992644c2f2ea21d3bf12ab64c3554784ce54fb6eb4",
    LinkSession.code_verifier_ciphertext: "01027431dddf131397bfe7dded8946b7374ac3a5d3668e88f4d217416225c525"
    "5623beebcab73327a58e41df638e27f9adede5ea8aff4b0cafb5d023ed2352d1ecbb592f8b6e",
    LinkSession.access_token_ciphertext: "010274315c34f7bcbbdef2b05c63339eddc57ece48fd65bbe58ab2805a288bbfd"
    "d4623048a776f94b1111fd4c64395d9b85084687e8961eca02c57e47ad7a8a4da91ad32d7",
    LinkSession.refresh_token_ciphertext: "0102743168a95e90ca883cbd911c7752161973eff76e0f441cdb7e1431c2d891"
    "66d2124b4a0dde245222c13f23979f80e36211e4debe5468b78b2e98498b57674397f3e6a004",
    WebhookEndpoint.secret_ciphertext: "010274317349a18e324d3af13f076f854f0fdbd1d9c51c2b05f9dcb1fca9d22156"
    "43157a1a9406649ac2e522c5d13e5ecfb88058032fd289218f5ba8a40a86f3994939",
    WebhookEndpoint.previous_secret_ciphertext: "01027431cd8480b91687a693db604d85cf423731337d66f90876bf94cb51"
    "9ee30d0faaef939d4bac01648ee6d92a09f3c4c9b2b748fa6de26b190696cdc0a1aabe7771f384ada5be675379c3",
}


@pytest.fixture
def vault() -> TokenVault:
    return TokenVault(KeyRing(parse_encryption_keys(ENCRYPTION_KEY)))


class TestBinding:
    @pytest.mark.parametrize("column", list(SEALED_BY_NAME), ids=str)
    def test_a_blob_sealed_when_columns_were_named_by_strings_still_opens(
        self, vault: TokenVault, column: SealedColumn
    ) -> None:
        table, name = column_binding(column)
        assert vault.open(column, ROW, bytes.fromhex(SEALED_BY_NAME[column])) == f"{table}.{name}"

    def test_the_names_are_the_tables_and_columns_in_the_database(self) -> None:
        assert column_binding(Account.access_token_ciphertext) == ("accounts", "access_token_ciphertext")
        assert column_binding(LinkSession.code_verifier_ciphertext) == (
            "link_sessions",
            "code_verifier_ciphertext",
        )
        assert column_binding(WebhookEndpoint.secret_ciphertext) == ("webhook_endpoints", "secret_ciphertext")

    def test_a_table_column_binds_like_the_mapped_attribute(self, vault: TokenVault) -> None:
        blob = vault.seal(Account.refresh_token_ciphertext, ROW, "refresh")
        assert vault.open(Account.__table__.c.refresh_token_ciphertext, ROW, blob) == "refresh"

    def test_a_blob_does_not_open_in_another_column_row_or_table(self, vault: TokenVault) -> None:
        blob = vault.seal(Account.access_token_ciphertext, ROW, "access")
        for other, row in [
            (Account.refresh_token_ciphertext, ROW),
            (Account.access_token_ciphertext, uuid.uuid4()),
            (LinkSession.access_token_ciphertext, ROW),
        ]:
            with pytest.raises(DecryptionError):
                vault.open(other, row, blob)

    def test_a_column_without_a_table_is_refused(self, vault: TokenVault) -> None:
        with pytest.raises(TypeError):
            vault.seal(column("access_token_ciphertext"), ROW, "access")


def test_the_key_rotation_covers_every_sealed_column() -> None:
    sealed = {
        (table.name, table_column.name)
        for table in Base.metadata.tables.values()
        for table_column in table.columns
        if isinstance(table_column.type, LargeBinary) and table_column.name.endswith("_ciphertext")
    }
    assert {column_binding(sealed_column) for sealed_column in SEALED_COLUMNS} == sealed
