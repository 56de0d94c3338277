"""Writes to staff accounts, each with its audit event."""

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError
from portal.models import Region, Role, SignInState, User
from portal.passwords import temporary_password
from portal.scope import visible_region_codes
from portal.selectors import roles_manageable_by, staff_visible_to
from portal.staff_errors import StaffErrorCode


def audit_staff_change(
    *, actor: Actor, action: str, user: User, before: dict | None = None, after: dict | None = None, reason: str = ""
) -> None:
    """The audit event of a change to a staff account, filed under the account's region."""
    audit_record(
        actor=actor,
        action=action,
        object_type="user",
        object_id=user.pk,
        region_code=user.audit_region_code(),
        before=before,
        after=after,
        reason=reason,
    )


def _staff_snapshot(user: User, region_codes: list[str]) -> dict:
    return {
        "username": user.username,
        "role": user.role,
        "also_auditor": user.also_auditor,
        "regions": sorted(region_codes),
        "is_active": user.is_active,
    }


@transaction.atomic
def staff_create(
    *,
    actor: Actor,
    manager: User,
    username: str,
    email: str,
    role: str,
    regions: Iterable[Region],
    password: str,
    also_auditor: bool = False,
) -> User:
    """Create a staff account. Region administrators create clerks of their own
    regions only; national operators create anyone (portal/selectors.py says why).

    `also_auditor` gives a national operator the audit duty too, which only a
    deployment that sets ECARD_ALLOW_OPERATOR_AUDITOR allows; a security officer
    is national and bound to no region."""
    if role not in roles_manageable_by(manager):
        raise DomainError(
            StaffErrorCode.FORBIDDEN, _("You may not create accounts with this role."), status=403, field="role"
        )
    if also_auditor and not getattr(settings, "ECARD_ALLOW_OPERATOR_AUDITOR", False):
        raise DomainError(
            StaffErrorCode.FORBIDDEN,
            _("This deployment does not allow an account to be both operator and auditor."),
            status=403,
            field="also_auditor",
        )
    if also_auditor and role != Role.NATIONAL_OPERATOR:
        raise DomainError(
            StaffErrorCode.VALIDATION_ERROR,
            _("Only a national operator may also be an auditor."),
            status=400,
            field="also_auditor",
        )
    region_list = [] if role == Role.SECURITY_OFFICER else list(regions)
    codes = [r.code for r in region_list]
    allowed = visible_region_codes(manager)
    if allowed is not None and not set(codes) <= set(allowed):
        raise DomainError(
            StaffErrorCode.FORBIDDEN, _("You may only choose your own regions."), status=403, field="regions"
        )
    if not codes and role not in (Role.NATIONAL_OPERATOR, Role.SECURITY_OFFICER):
        raise DomainError(
            StaffErrorCode.VALIDATION_ERROR, _("Choose at least one region."), status=400, field="regions"
        )
    username = username.strip()
    if not username:
        raise DomainError(StaffErrorCode.VALIDATION_ERROR, _("A username is required."), status=400, field="username")
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError as exc:
        raise DomainError(
            StaffErrorCode.VALIDATION_ERROR, " ".join(exc.messages), status=400, field="username"
        ) from exc
    if User.objects.filter(username__iexact=username).exists():
        raise DomainError(StaffErrorCode.USERNAME_TAKEN, _("This username is already taken."), field="username")
    user = User(username=username, email=email.strip(), role=role, also_auditor=also_auditor)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise DomainError(StaffErrorCode.WEAK_PASSWORD, " ".join(exc.messages), status=400, field="password") from exc
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError as exc:
        raise DomainError(
            StaffErrorCode.USERNAME_TAKEN, _("This username is already taken."), field="username"
        ) from exc
    user.regions.set(region_list)
    # The administrator chose this password: the person chooses their own at first sign-in.
    SignInState.objects.create(user=user, must_change_password=True)
    audit_staff_change(
        actor=actor,
        action="staff.create",
        user=user,
        after=_staff_snapshot(user, codes),
    )
    return user


@transaction.atomic
def staff_deactivate(*, actor: Actor, manager: User, user: User, reason: str) -> User:
    """Deactivate an account the manager may manage (sign-in refused from then on)."""
    reason = _required_reason(reason)
    user = _managed(manager, user, own_account_error=_("You cannot deactivate your own account."))
    if not user.is_active:
        return user
    return _staff_set_active(actor=actor, user=user, is_active=False, action="staff.deactivate", reason=reason)


@transaction.atomic
def staff_reactivate(*, actor: Actor, manager: User, user: User, reason: str) -> User:
    """Let a deactivated account the manager manages sign in again (a clerk back from leave)."""
    reason = _required_reason(reason)
    user = _managed(manager, user)
    if user.is_active:
        raise DomainError(StaffErrorCode.NOT_DEACTIVATED, _("This account is active."), status=409)
    return _staff_set_active(actor=actor, user=user, is_active=True, action="staff.reactivate", reason=reason)


def _staff_set_active(*, actor: Actor, user: User, is_active: bool, action: str, reason: str) -> User:
    """Switch sign-in on or off for an account locked for the change, and audit it."""
    codes = list(user.regions.values_list("code", flat=True))
    before = _staff_snapshot(user, codes)
    user.is_active = is_active
    user.save(update_fields=["is_active"])
    audit_staff_change(
        actor=actor, action=action, user=user, before=before, after=_staff_snapshot(user, codes), reason=reason
    )
    return user


def _managed(manager: User, user: User, *, own_account_error: Promise | None = None) -> User:
    """The account, locked for the change, if the manager may manage it (not their own)."""
    if user.pk == manager.pk:
        message = own_account_error or _("You cannot do this to your own account.")
        raise DomainError(StaffErrorCode.FORBIDDEN, message, status=403)
    if not staff_visible_to(manager).filter(pk=user.pk).exists():
        raise DomainError(StaffErrorCode.NOT_FOUND, _("No such staff member."), status=404)
    return User.objects.select_for_update().get(pk=user.pk)


def _required_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DomainError(StaffErrorCode.REASON_REQUIRED, _("A reason is required."), status=400, field="reason")
    return reason[:128]


@transaction.atomic
def staff_unlock(*, actor: Actor, manager: User, user: User, reason: str) -> User:
    """End the sign-in lock of an account the manager manages."""
    reason = _required_reason(reason)
    user = _managed(manager, user)
    state = SignInState.objects.select_for_update().filter(user=user).first()
    if state is None or state.locked_until is None:
        raise DomainError(StaffErrorCode.NOT_LOCKED, _("This account is not locked."), status=409)
    before = {"locked_until": state.locked_until.isoformat(), "failed_attempts": state.failed_attempts}
    state.locked_until = None
    state.failed_attempts = 0
    state.last_failed_at = None
    state.save(update_fields=["locked_until", "failed_attempts", "last_failed_at"])
    audit_staff_change(
        actor=actor,
        action="staff.unlock",
        user=user,
        before=before,
        after={"locked_until": None},
        reason=reason,
    )
    return user


@transaction.atomic
def staff_password_reset(*, actor: Actor, manager: User, user: User, reason: str) -> str:
    """Give an account the manager manages a temporary password, returned once to be handed
    over: the person must change it at their next sign-in, which it also unlocks. Their open
    sessions end (the password hash changed)."""
    reason = _required_reason(reason)
    user = _managed(manager, user)
    if not user.is_active:
        raise DomainError(StaffErrorCode.FORBIDDEN, _("This account is deactivated."), status=403)
    password = temporary_password()
    user.set_password(password)
    user.save(update_fields=["password"])
    SignInState.objects.update_or_create(
        user=user,
        defaults={"must_change_password": True, "locked_until": None, "failed_attempts": 0, "last_failed_at": None},
    )
    audit_staff_change(
        actor=actor,
        action="staff.password_reset",
        user=user,
        after={"username": user.username, "must_change_password": True},
        reason=reason,
    )
    return password


@transaction.atomic
def staff_password_chosen(*, actor: Actor, user: User, password: str) -> None:
    """The person set their own password (allauth's change, set or reset form, which validated
    it): an initial or reset password no longer has to be changed."""
    user.set_password(password)
    user.save(update_fields=["password"])
    was_required = SignInState.objects.filter(user=user, must_change_password=True).update(must_change_password=False)
    audit_staff_change(
        actor=actor,
        action="staff.password_change",
        user=user,
        after={"username": user.username, "required_change_done": bool(was_required)},
    )
