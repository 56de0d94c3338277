"""Sign-in controls: lock-out by account, and the password a person must change.

Failed sign-ins are counted against the account they name, wherever they come from: after
`ECARD_SIGN_IN_MAX_FAILURES` failures within the lock period the account is locked for
`ECARD_SIGN_IN_LOCK_MINUTES`, even for the right password, and the lock is audited. A name that
belongs to no account is counted the same way (in the cache), so that the lock message tells
nobody which names exist. allauth keeps a high per-address limit beside this
(ACCOUNT_RATE_LIMITS "login_failed"), counted on the real client address (portal.actors.client_ip).
"""

import datetime as dt
import hashlib
import math

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from portal.actors import Actor
from portal.models import SignInState, User
from portal.services import audit_staff_change


def _lock_period() -> dt.timedelta:
    return dt.timedelta(minutes=settings.ECARD_SIGN_IN_LOCK_MINUTES)


def locked_message(minutes: int) -> str:
    return ngettext(
        "This account is locked. Try again in %(minutes)d minute.",
        "This account is locked. Try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}


def _minutes_left(locked_until: dt.datetime | None, now: dt.datetime) -> int:
    if locked_until is None or locked_until <= now:
        return 0
    return max(1, math.ceil((locked_until - now).total_seconds() / 60))


def _count_failure(failed: int, last_failed_at: dt.datetime | None, now: dt.datetime) -> tuple[int, dt.datetime | None]:
    """(failures now counted, locked until): failures older than the lock period are forgotten."""
    if last_failed_at is None or now - last_failed_at > _lock_period():
        failed = 0
    failed += 1
    if failed >= settings.ECARD_SIGN_IN_MAX_FAILURES:
        return 0, now + _lock_period()
    return failed, None


# --- Accounts -----------------------------------------------------------------------------------


def lock_minutes_left(user: User) -> int:
    """Whole minutes (rounded up) until the account may sign in again; 0 if it is not locked."""
    locked_until = SignInState.objects.filter(user=user).values_list("locked_until", flat=True).first()
    return _minutes_left(locked_until, timezone.now())


@transaction.atomic
def sign_in_failed(*, user: User, ip: str | None) -> int:
    """Count a failed sign-in of the account; returns the lock's minutes if this failure locked it."""
    state, _created = SignInState.objects.select_for_update().get_or_create(user=user)
    now = timezone.now()
    if _minutes_left(state.locked_until, now):
        return 0  # refused before the password was checked; a lock is never lengthened
    state.failed_attempts, state.locked_until = _count_failure(state.failed_attempts, state.last_failed_at, now)
    state.last_failed_at = now
    state.save(update_fields=["failed_attempts", "last_failed_at", "locked_until"])
    if state.locked_until is None:
        return 0
    audit_staff_change(
        actor=Actor(type="system", id="", label="sign-in", ip=ip),
        action="staff.lock",
        user=user,
        after={
            "username": user.username,
            "failed_attempts": settings.ECARD_SIGN_IN_MAX_FAILURES,
            "locked_until": state.locked_until.isoformat(),
        },
        reason=_("Too many failed sign-ins"),
    )
    return _minutes_left(state.locked_until, now)


def sign_in_succeeded(*, user: User) -> None:
    """The password was right: earlier failures no longer count towards a lock."""
    SignInState.objects.filter(user=user, failed_attempts__gt=0).update(failed_attempts=0, last_failed_at=None)


# --- Names that belong to no account (counted in the cache, never audited) -----------------------


def _unknown_key(login: str) -> str:
    return "signin:unknown:" + hashlib.sha256(login.strip().lower().encode()).hexdigest()


def unknown_lock_minutes_left(login: str) -> int:
    entry = cache.get(_unknown_key(login)) or {}
    return _minutes_left(entry.get("locked_until"), timezone.now())


def unknown_sign_in_failed(login: str) -> int:
    key = _unknown_key(login)
    entry = cache.get(key) or {}
    now = timezone.now()
    failed, locked_until = _count_failure(entry.get("failed", 0), entry.get("last_failed_at"), now)
    cache.set(
        key,
        {"failed": failed, "last_failed_at": now, "locked_until": locked_until},
        int(_lock_period().total_seconds()) * 2,
    )
    return _minutes_left(locked_until, now)


# --- The password a person must change ----------------------------------------------------------


def must_change_password(user: User) -> bool:
    return SignInState.objects.filter(user=user, must_change_password=True).exists()
