"""What a citizen row stores of a person: the one place that encrypts, indexes and
masks a citizen's identity number and phone. `services.citizen_register` and
`citizen_update` use it for one citizen, the bulk import for every new row."""

import datetime as dt
from typing import NamedTuple

from insurance.identity import IdentityNumber
from insurance.models import ID_NUMBER_PURPOSE, PHONE_PURPOSE
from portal.crypto import FieldCipher
from portal.masking import mask_id_number, mask_phone


class CitizenCiphers:
    """The ciphers of a citizen's two encrypted fields; one per batch in a bulk import."""

    __slots__ = ("id_number", "phone")

    def __init__(self) -> None:
        self.id_number = FieldCipher(ID_NUMBER_PURPOSE)
        self.phone = FieldCipher(PHONE_PURPOSE)


class CitizenValues(NamedTuple):
    """A citizen's stored personal columns, in the bulk import's COPY column order.
    A tuple, so that a bulk write needs no model instance per row."""

    id_number_enc: bytes
    id_number_bidx: str
    id_number_masked: str
    name: str
    phone_enc: bytes | None
    phone_bidx: str
    phone_masked: str
    birth_date: dt.date
    sex: str
    scheme: str


def phone_values(phone: str, ciphers: CitizenCiphers) -> tuple[bytes | None, str, str]:
    """(phone_enc, phone_bidx, phone_masked); an empty phone stores no ciphertext and
    an empty index and mask."""
    phone = phone.strip()
    if not phone:
        return None, "", ""
    return ciphers.phone.encrypt(phone), ciphers.phone.blind_index(phone), mask_phone(phone)


def citizen_values(
    *,
    identity: IdentityNumber,
    name: str,
    phone: str,
    scheme: str,
    ciphers: CitizenCiphers,
    id_number_bidx: str | None = None,
) -> CitizenValues:
    """The values of a new citizen, already validated. `id_number_bidx` is the
    identity number's newest-key blind index when the caller has computed it
    (the import does, to look the number up first)."""
    value = identity.value
    return CitizenValues(
        ciphers.id_number.encrypt(value),
        id_number_bidx or ciphers.id_number.blind_index(value),
        mask_id_number(value),
        name,
        *phone_values(phone, ciphers),
        identity.birth_date,
        identity.sex,
        scheme,
    )
