from __future__ import annotations

import uuid

import pytest

from allegro_link.crypto.keys import DecryptionError, KeyRing, associated_data, generate_key_entry
from allegro_link.settings import parse_encryption_keys
from tests.support.factories import ENCRYPTION_KEY, OLD_ENCRYPTION_KEY


def _ring(raw: str) -> KeyRing:
    return KeyRing(parse_encryption_keys(raw))


class TestKeyRing:
    def test_round_trip(self) -> None:
        ring = _ring(ENCRYPTION_KEY)
        aad = associated_data("accounts", uuid.uuid4(), "refresh_token")
        blob = ring.encrypt("secret-token", aad)
        assert b"secret-token" not in blob
        assert ring.decrypt(blob, aad) == "secret-token"
        assert ring.key_id_of(blob) == "t1"

    def test_ciphertext_copied_to_another_row_fails(self) -> None:
        ring = _ring(ENCRYPTION_KEY)
        blob = ring.encrypt("secret-token", associated_data("accounts", uuid.uuid4(), "refresh_token"))
        with pytest.raises(DecryptionError):
            ring.decrypt(blob, associated_data("accounts", uuid.uuid4(), "refresh_token"))

    def test_ciphertext_copied_to_another_column_fails(self) -> None:
        ring = _ring(ENCRYPTION_KEY)
        row = uuid.uuid4()
        blob = ring.encrypt("secret-token", associated_data("accounts", row, "refresh_token"))
        with pytest.raises(DecryptionError):
            ring.decrypt(blob, associated_data("accounts", row, "access_token"))

    def test_old_keys_still_decrypt_and_primary_encrypts(self) -> None:
        aad = associated_data("accounts", uuid.uuid4(), "access_token")
        old_blob = _ring(OLD_ENCRYPTION_KEY).encrypt("v", aad)
        rotated = _ring(f"{ENCRYPTION_KEY},{OLD_ENCRYPTION_KEY}")
        assert rotated.decrypt(old_blob, aad) == "v"
        assert rotated.needs_rotation(old_blob)
        assert not rotated.needs_rotation(rotated.encrypt("v", aad))

    def test_unknown_key_and_tampering_are_refused(self) -> None:
        aad = associated_data("accounts", uuid.uuid4(), "access_token")
        blob = _ring(OLD_ENCRYPTION_KEY).encrypt("v", aad)
        with pytest.raises(DecryptionError, match="unknown encryption key id"):
            _ring(ENCRYPTION_KEY).decrypt(blob, aad)
        tampered = blob[:-1] + bytes([blob[-1] ^ 1])
        with pytest.raises(DecryptionError):
            _ring(OLD_ENCRYPTION_KEY).decrypt(tampered, aad)
        with pytest.raises(DecryptionError):
            _ring(OLD_ENCRYPTION_KEY).decrypt(blob[:10], aad)

    def test_generated_entry_is_accepted_by_settings(self) -> None:
        (key,) = parse_encryption_keys(generate_key_entry())
        assert len(key.secret) == 32
