"""Fixtures every subject uses. Tests run against real PostgreSQL and Redis (see README).

The helpers the fixtures build on are plain functions in `testkit/`, shared with the benchmarks."""

import datetime as dt
import itertools

import pytest

from insurance import services as insurance_services
from portal.actors import Actor
from portal.models import Role, User
from testkit.browser import TotpClock
from testkit.citizens import ensure_pilot_regions, new_id_number, next_serial
from testkit.settlements import World, build_world


@pytest.fixture(autouse=True)
def _no_cached_partner_keys():
    """A test's rolled-back partner keys were never announced as deleted: start without cached rows."""
    from payments.api.auth import forget_cached_keys

    forget_cached_keys()


_checkpoint_dirs = itertools.count()


@pytest.fixture(autouse=True)
def _own_audit_checkpoint(tmp_path_factory, monkeypatch):
    """Each test its own audit checkpoint file (portal/audit_checkpoint.py), here and in the processes it
    starts: one left by another test's database, or by a demo in var/, would not match this one's chain."""
    from django.conf import settings as django_settings

    path = str(tmp_path_factory.getbasetemp() / "audit-checkpoints" / str(next(_checkpoint_dirs)) / "checkpoint.json")
    monkeypatch.setattr(django_settings, "ECARD_AUDIT_CHECKPOINT_PATH", path)
    monkeypatch.setenv("ECARD_AUDIT_CHECKPOINT_PATH", path)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's deliberate slowness is for attackers, not for the test suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def regions(db):
    """The seven pilot regions (a transactional test's flush removes the migrated rows)."""
    return ensure_pilot_regions()


@pytest.fixture
def system_actor():
    return Actor.system("tests")


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
        username = username or f"{role}-{next_serial()}"
        user = User.objects.create_user(username=username, email=f"{username}@example.cn", password=password, role=role)
        user.regions.set([regions[c] for c in region_codes])
        return user

    return factory


# --- Portal keys, partners' caches and the settlement world (payments, portal and root tests) ----------


@pytest.fixture
def portal_key(db):
    """The portal's signing key (responses and webhooks are signed with it)."""
    from payments import keys

    keys._forget_cached_key()
    key = keys.portal_key_create(actor=Actor.system("tests"))
    yield key
    keys._forget_cached_key()


@pytest.fixture
def signing_key(portal_key):
    """The portal's signing key, under the name the settlement tests use."""
    return portal_key


@pytest.fixture
def fresh_cache():
    """Our own Redis db: forget counters left by an earlier run whose partner ids may repeat."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def world(regions, signing_key) -> World:
    """A facility, a small catalogue and this year's policies in 310000."""
    return build_world(regions)


@pytest.fixture
def totp(monkeypatch) -> TotpClock:
    """allauth's TOTP clock, frozen at the start of the test (the live server of the browser tests
    is a thread of this process): `totp.code(secret)` is valid without waiting for a fresh period, and
    `totp.next_period()` moves on when a test signs in again (a used code stays refused)."""
    import time

    from allauth.mfa.totp.internal import auth

    clock = TotpClock(time.time())
    monkeypatch.setattr(auth, "time", clock)
    return clock
