"""Field encryption (AES-256-GCM) and blind indexes, including key rotation."""

import os

import pytest
from cryptography.exceptions import InvalidTag
from django.conf import settings
from django.test import override_settings

from insurance import services
from insurance.models import ID_NUMBER_PURPOSE
from portal.crypto import blind_index, blind_index_candidates, decrypt_text, encrypt_text
from testkit.citizens import new_id_number


def with_new_key(setting: str) -> dict:
    keys = dict(getattr(settings, setting))
    keys[max(keys) + 1] = os.urandom(32)
    return keys


def test_encrypted_text_decrypts_to_the_original_and_does_not_contain_it():
    blob = encrypt_text("310101198507201234", purpose="citizen.id_number")

    assert b"310101198507201234" not in blob
    assert decrypt_text(blob, purpose="citizen.id_number") == "310101198507201234"
    assert decrypt_text(memoryview(blob), purpose="citizen.id_number") == "310101198507201234"


def test_the_same_value_encrypts_differently_each_time():
    assert encrypt_text("张三", purpose="p") != encrypt_text("张三", purpose="p")


def test_a_ciphertext_cannot_be_moved_to_another_purpose():
    blob = encrypt_text("13812345678", purpose="citizen.phone")

    with pytest.raises(InvalidTag):
        decrypt_text(blob, purpose="citizen.id_number")


def test_a_tampered_ciphertext_is_refused():
    blob = bytearray(encrypt_text("13812345678", purpose="citizen.phone"))
    blob[-1] ^= 1

    with pytest.raises(InvalidTag):
        decrypt_text(bytes(blob), purpose="citizen.phone")


def test_blind_indexes_are_deterministic_versioned_and_purpose_bound():
    first = blind_index("310101198507201234", purpose="citizen.id_number")

    assert first == blind_index("310101198507201234", purpose="citizen.id_number")
    assert first != blind_index("310101198507201234", purpose="citizen.phone")
    assert first.startswith(f"{max(settings.ECARD_BLIND_INDEX_KEYS)}:")
    assert "310101198507201234" not in first


def test_after_an_encryption_key_rotation_old_ciphertexts_still_decrypt_and_new_ones_use_the_new_key():
    old_blob = encrypt_text("secret", purpose="p")
    keys = with_new_key("ECARD_FIELD_ENCRYPTION_KEYS")

    with override_settings(ECARD_FIELD_ENCRYPTION_KEYS=keys):
        new_blob = encrypt_text("secret", purpose="p")
        assert new_blob[0] == max(keys)
        assert decrypt_text(old_blob, purpose="p") == "secret"
        assert decrypt_text(new_blob, purpose="p") == "secret"


@pytest.mark.django_db
def test_a_citizen_indexed_under_the_old_blind_index_key_is_still_found_after_rotation(regions, system_actor):
    number = new_id_number()
    citizen = services.citizen_register(
        actor=system_actor, id_number=number, name="赵六", phone="", region=regions["310000"], scheme="resident"
    )
    keys = with_new_key("ECARD_BLIND_INDEX_KEYS")

    with override_settings(ECARD_BLIND_INDEX_KEYS=keys):
        candidates = blind_index_candidates(number, purpose=ID_NUMBER_PURPOSE)
        assert len(candidates) == len(keys)
        assert candidates[0].startswith(f"{max(keys)}:")
        assert services.find_citizen_id_by_id_number(number) == citizen.pk
        # And a second registration of the same number is still refused.
        with pytest.raises(services.DomainError) as excinfo:
            services.citizen_register(
                actor=system_actor, id_number=number, name="赵六", phone="", region=regions["310000"], scheme="resident"
            )
        assert excinfo.value.code == "citizen_exists"
