"""GB 11643 resident identity numbers.

18 characters: a six-digit area code whose first two digits are a province of
GB/T 2260, an eight-digit birth date, a three-digit sequence whose parity is
the sex (odd: male), and an ISO 7064 MOD 11-2 check character `0-9X`.
"""

import csv
import datetime as dt
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]
_CHECK_CHARS = "10X98765432"
# ASCII digits only: `\d` would accept full-width and other Unicode digits, and
# `$` would accept a trailing newline.
_FORMAT = re.compile(r"[0-9]{17}[0-9X]")
EARLIEST_BIRTH_DATE = dt.date(1900, 1, 1)


@cache
def province_prefixes() -> frozenset[str]:
    path = Path(__file__).resolve().parent / "data" / "province_codes.csv"
    with path.open(encoding="utf-8") as handle:
        return frozenset(row["code"] for row in csv.DictReader(handle))


def check_character(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


class InvalidIdentityNumber(ValueError):
    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class IdentityNumber:
    value: str
    birth_date: dt.date
    sex: str  # "M" or "F"


def normalize(raw: str) -> str:
    return raw.strip().upper()


def parse_identity_number(raw: str, *, today: dt.date | None = None) -> IdentityNumber:
    """Validate and parse; raises InvalidIdentityNumber with a stable code."""
    value = normalize(raw)
    if not _FORMAT.fullmatch(value):
        raise InvalidIdentityNumber(
            "format", str(_("An identity number is 18 characters: 17 digits and a digit or X."))
        )
    if value[:2] not in province_prefixes():
        raise InvalidIdentityNumber("region", str(_("The identity number does not start with a known province code.")))
    try:
        birth_date = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise InvalidIdentityNumber(
            "birth_date", str(_("The birth date in the identity number is not a real date."))
        ) from None
    today = today or timezone.localdate()
    if birth_date > today or birth_date < EARLIEST_BIRTH_DATE:
        raise InvalidIdentityNumber("birth_date", str(_("The birth date in the identity number is not possible.")))
    if check_character(value[:17]) != value[17]:
        raise InvalidIdentityNumber("checksum", str(_("The identity number's check character is wrong.")))
    sex = "M" if int(value[16]) % 2 == 1 else "F"
    return IdentityNumber(value=value, birth_date=birth_date, sex=sex)


def make_identity_number(area_code: str, birth_date: dt.date, sequence: int) -> str:
    """Build a valid number (demo data, benchmarks and tests). `sequence` is 0..999."""
    first17 = f"{area_code}{birth_date:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)
