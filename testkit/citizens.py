"""Fresh valid identity numbers, and the pilot regions as rows."""

import datetime as dt
import itertools

from insurance.identity import make_identity_number
from portal.regions import pilot_regions

# A district of each pilot region, for identity numbers.
AREA_OF = {
    "130000": "130102",
    "220000": "220102",
    "230000": "230102",
    "310000": "310101",
    "350000": "350102",
    "370000": "370102",
    "440000": "440103",
}

_sequence = itertools.count(1)


def next_serial() -> int:
    """A number not handed out before in this process (for unique usernames and the like)."""
    return next(_sequence)


def new_id_number(region_code: str = "310000", birth: dt.date | None = None, male: bool | None = None) -> str:
    """A fresh valid identity number in a district of the region."""
    n = next_serial()
    birth = birth or dt.date(1950, 1, 1) + dt.timedelta(days=n % 20000)
    seq = (n * 7) % 1000
    if male is not None and (seq % 2 == 1) != male:
        seq = (seq + 1) % 1000
    return make_identity_number(AREA_OF[region_code], birth, seq)


def ensure_pilot_regions() -> dict:
    """The pilot regions' rows by code, created if missing (a transactional test's flush removes
    the migrated rows)."""
    from portal.models import Region

    for region in pilot_regions():
        Region.objects.get_or_create(
            code=region.code,
            defaults={"name_zh": region.name_zh, "name_en": region.name_en, "pilot_start": region.pilot_start},
        )
    return {r.code: r for r in Region.objects.all()}
