"""A fast path for the request bodies of `POST /settlements` and `POST /settlements/{id}/confirm`.

DRF's serializers cost many times the work of the request's own logic for these bodies (deep
copies of the fields on every instantiation, a nested serializer per line, a Python loop with
`ord()` over every character of the QR token for lone surrogates). These functions give the very
`validated_data` of `SettlementCreateInputSerializer` and `SettlementConfirmInputSerializer`
(payments/settlements/api.py) for a plainly valid body, cheaply, and None for anything else: the
view then falls back to the serializer, so every refusal, its message and its shape, still comes
from DRF.

Conservative on purpose: exact JSON types only (`type(x) is int`, never a bool or a subclass), no
unknown key, strings accepted only when DRF's `CharField` would return them unchanged (trimming
fields: not blank, no leading or trailing whitespace in `str.strip()`'s sense, at most `max_length`
characters; no NUL nor lone surrogate, which DRF's validators refuse). A doubt is a None.
The serializers take their bounds from the constants below; tests/payments/test_api_fastinput.py
checks that the rest of their fields' options still match what these functions assume.
"""

import re

from payments.api.base import HIDDEN_CHARACTERS
from payments.settlements.services import MAX_LINES

MAX_FEN = 10**12  # far above any real price: keeps every sum inside a 64-bit integer

SERVICE_CODE_MAX_LENGTH = 32
FACILITY_CODE_MAX_LENGTH = 32
QUANTITY_RANGE = (1, 9999)
UNIT_PRICE_FEN_RANGE = (0, MAX_FEN)
PARTNER_TRANSACTION_ID_MAX_LENGTH = 128
SELF_PAY_FEN_RANGE = (0, 10**18)

_CREATE_KEYS = frozenset({"token", "facility_code", "lines", "use_personal_account"})
_LINE_KEYS = frozenset({"service_code", "quantity", "unit_price_fen"})
_CONFIRM_KEYS = frozenset({"partner_transaction_id", "self_pay_fen"})

# What DRF's ProhibitNullCharactersValidator and ProhibitSurrogateCharactersValidator refuse, in
# one regex search (in C). StrictJSONParser already refuses both; checked again so that this
# module's answer never depends on which parser produced the body.
_REFUSED_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


def _untrimmed_text(value: object) -> bool:
    """What `StrictCharField(allow_blank=True, trim_whitespace=False)` returns unchanged: any str."""
    return type(value) is str and _REFUSED_CHARACTERS.search(value) is None


def _trimmed_text(value: object, max_length: int) -> bool:
    """What a trimming, non-blank `StrictCharField(max_length=...)` returns unchanged.

    DRF strips with `str.strip()` (Unicode whitespace) before counting characters: a string equal
    to its stripped self is returned as is; a padded one is left to DRF (None)."""
    return (
        type(value) is str
        and 0 < len(value) <= max_length
        and value.strip() == value
        and _REFUSED_CHARACTERS.search(value) is None
    )


def _reference(value: object, max_length: int) -> bool:
    """What a `ReferenceField(max_length=...)` returns unchanged: trimmed text without control
    characters or bidirectional controls."""
    return isinstance(value, str) and _trimmed_text(value, max_length) and HIDDEN_CHARACTERS.search(value) is None


def _whole(value: object, bounds: tuple[int, int]) -> bool:
    """What `StrictIntegerField(min_value=..., max_value=...)` accepts: an int (not a bool) in bounds."""
    return type(value) is int and bounds[0] <= value <= bounds[1]


def _line(line: object) -> dict | None:
    if type(line) is not dict or line.keys() != _LINE_KEYS:
        return None
    service_code = line["service_code"]
    quantity = line["quantity"]
    unit_price_fen = line["unit_price_fen"]
    if not (
        _trimmed_text(service_code, SERVICE_CODE_MAX_LENGTH)
        and _whole(quantity, QUANTITY_RANGE)
        and _whole(unit_price_fen, UNIT_PRICE_FEN_RANGE)
    ):
        return None
    return {"service_code": service_code, "quantity": quantity, "unit_price_fen": unit_price_fen}


def settlement_create_input(data: object) -> dict | None:
    """`SettlementCreateInputSerializer(data=data).validated_data` for a plainly valid body, else None."""
    if type(data) is not dict or not data.keys() <= _CREATE_KEYS:
        return None
    token = data.get("token")
    facility_code = data.get("facility_code")
    raw_lines = data.get("lines")
    use_personal_account = data.get("use_personal_account", False)  # the field's default
    if not (
        _untrimmed_text(token)
        and _trimmed_text(facility_code, FACILITY_CODE_MAX_LENGTH)
        and type(use_personal_account) is bool
        and type(raw_lines) is list
        and 1 <= len(raw_lines) <= MAX_LINES
    ):
        return None
    lines = []
    for raw_line in raw_lines:
        line = _line(raw_line)
        if line is None:
            return None
        lines.append(line)
    # The serializer's field order, as DRF builds it.
    return {
        "token": token,
        "facility_code": facility_code,
        "lines": lines,
        "use_personal_account": use_personal_account,
    }


def settlement_confirm_input(data: object) -> dict | None:
    """`SettlementConfirmInputSerializer(data=data).validated_data` for a plainly valid body, else None."""
    if type(data) is not dict or data.keys() != _CONFIRM_KEYS:
        return None
    partner_transaction_id = data["partner_transaction_id"]
    self_pay_fen = data["self_pay_fen"]
    if not (
        _reference(partner_transaction_id, PARTNER_TRANSACTION_ID_MAX_LENGTH)
        and _whole(self_pay_fen, SELF_PAY_FEN_RANGE)
    ):
        return None
    return {"partner_transaction_id": partner_transaction_id, "self_pay_fen": self_pay_fen}
