"""Shared fixtures. Tests run against real PostgreSQL and Redis (see README)."""

import datetime as dt
import itertools

import pytest

from insurance import services as insurance_services
from insurance.identity import make_identity_number
from portal.actors import Actor
from portal.models import Region, Role, User

PILOT_REGIONS = {
    "130000": ("河北省", "Hebei"),
    "220000": ("吉林省", "Jilin"),
    "230000": ("黑龙江省", "Heilongjiang"),
    "310000": ("上海市", "Shanghai"),
    "350000": ("福建省", "Fujian"),
    "370000": ("山东省", "Shandong"),
    "440000": ("广东省", "Guangdong"),
}
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


@pytest.fixture(autouse=True)
def _no_cached_partner_keys():
    """A test's rolled-back partner keys were never announced as deleted: start without cached rows."""
    from payments.api.auth import forget_cached_keys

    forget_cached_keys()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's deliberate slowness is for attackers, not for the test suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def regions(db):
    """The seven pilot regions (a transactional test's flush removes the migrated rows)."""
    for code, (zh, en) in PILOT_REGIONS.items():
        Region.objects.get_or_create(
            code=code, defaults={"name_zh": zh, "name_en": en, "pilot_start": dt.date(2019, 11, 24)}
        )
    return {r.code: r for r in Region.objects.all()}


@pytest.fixture
def system_actor():
    return Actor.system("tests")


def new_id_number(region_code: str = "310000", birth: dt.date | None = None, male: bool | None = None) -> str:
    """A fresh valid identity number in a district of the region."""
    n = next(_sequence)
    birth = birth or dt.date(1950, 1, 1) + dt.timedelta(days=n % 20000)
    seq = (n * 7) % 1000
    if male is not None and (seq % 2 == 1) != male:
        seq = (seq + 1) % 1000
    return make_identity_number(AREA_OF[region_code], birth, seq)


@pytest.fixture
def make_citizen(regions, system_actor):
    def factory(
        region_code: str = "310000",
        *,
        name: str = "张三明",
        phone: str = "13812345678",
        scheme: str = "resident",
        birth: dt.date | None = None,
        with_card: bool = False,
    ):
        citizen = insurance_services.citizen_register(
            actor=system_actor,
            id_number=new_id_number(region_code, birth),
            name=name,
            phone=phone,
            region=regions[region_code],
            scheme=scheme,
        )
        if with_card:
            insurance_services.certificate_issue(actor=system_actor, citizen=citizen, reason="test")
        return citizen

    return factory


@pytest.fixture
def make_user(regions):
    def factory(
        role: str = Role.CLERK,
        region_codes: tuple[str, ...] = ("310000",),
        *,
        username: str | None = None,
        password: str = "correct-horse-battery-9",
    ):
        username = username or f"{role}-{next(_sequence)}"
        user = User.objects.create_user(username=username, email=f"{username}@example.cn", password=password, role=role)
        user.regions.set([regions[c] for c in region_codes])
        return user

    return factory
