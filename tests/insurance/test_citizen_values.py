"""The one builder of a citizen's stored values, and the reusable cipher under it:
the same format and keys as portal.crypto's functions, so either side reads the other."""

import os

from django.conf import settings
from django.test import override_settings

from insurance.citizen_values import CITIZEN_VALUE_FIELDS, CitizenCiphers, citizen_fields, citizen_values
from insurance.identity import parse_identity_number
from insurance.models import ID_NUMBER_PURPOSE, PHONE_PURPOSE
from portal.crypto import FieldCipher, blind_index, blind_index_candidates, decrypt_text
from portal.masking import mask_id_number, mask_phone
from testkit.citizens import new_id_number


def test_a_field_cipher_writes_what_decrypt_text_reads_and_the_blind_indexes_of_the_functions():
    cipher = FieldCipher(PHONE_PURPOSE)

    blob = cipher.encrypt("13812345678")

    assert decrypt_text(blob, purpose=PHONE_PURPOSE) == "13812345678"
    assert blob[0] == max(settings.ECARD_FIELD_ENCRYPTION_KEYS)
    assert cipher.blind_index("13812345678") == blind_index("13812345678", purpose=PHONE_PURPOSE)
    assert cipher.blind_index_candidates("13812345678") == blind_index_candidates("13812345678", purpose=PHONE_PURPOSE)


def test_a_field_cipher_uses_the_newest_keys_after_a_rotation():
    keys = dict(settings.ECARD_FIELD_ENCRYPTION_KEYS)
    keys[max(keys) + 1] = os.urandom(32)
    index_keys = dict(settings.ECARD_BLIND_INDEX_KEYS)
    index_keys[max(index_keys) + 1] = os.urandom(32)

    with override_settings(ECARD_FIELD_ENCRYPTION_KEYS=keys, ECARD_BLIND_INDEX_KEYS=index_keys):
        cipher = FieldCipher(ID_NUMBER_PURPOSE)
        blob = cipher.encrypt("x")
        assert blob[0] == max(keys)
        assert decrypt_text(blob, purpose=ID_NUMBER_PURPOSE) == "x"
        assert cipher.blind_index("x").startswith(f"{max(index_keys)}:")
        assert cipher.blind_index_candidates("x") == blind_index_candidates("x", purpose=ID_NUMBER_PURPOSE)


def test_citizen_values_encrypt_index_and_mask_the_identity_number_and_phone():
    identity = parse_identity_number(new_id_number())

    values = citizen_fields(
        citizen_values(
            identity=identity, name="张三", phone=" 138-0000-1234 ", scheme="resident", ciphers=CitizenCiphers()
        )
    )

    assert set(values) == set(CITIZEN_VALUE_FIELDS)
    assert decrypt_text(values["id_number_enc"], purpose=ID_NUMBER_PURPOSE) == identity.value
    assert values["id_number_bidx"] == blind_index(identity.value, purpose=ID_NUMBER_PURPOSE)
    assert values["id_number_masked"] == mask_id_number(identity.value)
    assert decrypt_text(values["phone_enc"], purpose=PHONE_PURPOSE) == "138-0000-1234"
    assert values["phone_bidx"] == blind_index("138-0000-1234", purpose=PHONE_PURPOSE)
    assert values["phone_masked"] == mask_phone("138-0000-1234")
    assert (values["name"], values["birth_date"], values["sex"], values["scheme"]) == (
        "张三",
        identity.birth_date,
        identity.sex,
        "resident",
    )


def test_an_empty_phone_stores_no_ciphertext_index_or_mask():
    identity = parse_identity_number(new_id_number())

    values = citizen_fields(
        citizen_values(identity=identity, name="李四", phone="  ", scheme="employee", ciphers=CitizenCiphers())
    )

    assert (values["phone_enc"], values["phone_bidx"], values["phone_masked"]) == (None, "", "")
