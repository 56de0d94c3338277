"""What a citizen row stores of a person: the one place that encrypts, indexes and
masks a citizen's identity number and phone. `services.citizen_register` and
`citizen_update` use it for one citizen, the bulk import for every new row."""

import datetime as dt

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


# A citizen's stored personal columns, in this order (the bulk import's COPY order).
CITIZEN_VALUE_FIELDS = (
    "id_number_enc",
    "id_number_bidx",
    "id_number_masked",
    "name",
    "phone_enc",
    "phone_bidx",
    "phone_masked",
    "birth_date",
    "sex",
    "scheme",
)
# A plain tuple rather than a model instance or a NamedTuple: the import builds one per row.
CitizenValues = tuple[bytes, str, str, str, bytes | None, str, str, dt.date, str, str]


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
    return (
        ciphers.id_number.encrypt(value),
        id_number_bidx or ciphers.id_number.blind_index(value),
        mask_id_number(value),
        name,
        *phone_values(phone, ciphers),
        identity.birth_date,
        identity.sex,
        scheme,
    )


def citizen_fields(values: CitizenValues) -> dict[str, object]:
    """The values as model field names, for `Citizen(**citizen_fields(values))`."""
    return dict(zip(CITIZEN_VALUE_FIELDS, values, strict=True))
