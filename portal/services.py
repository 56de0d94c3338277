"""Writes to staff accounts, each with its audit event."""

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError
from portal.models import Region, Role, User
from portal.scope import visible_region_codes
from portal.selectors import roles_manageable_by, staff_visible_to
from portal.staff_errors import StaffErrorCode


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
    audit_record(
        actor=actor,
        action="staff.create",
        object_type="user",
        object_id=user.pk,
        region_code=codes[0] if len(codes) == 1 else "",
        after=_staff_snapshot(user, codes),
    )
    return user


@transaction.atomic
def staff_deactivate(*, actor: Actor, manager: User, user: User, reason: str) -> User:
    """Deactivate an account the manager may manage (sign-in refused from then on)."""
    reason = (reason or "").strip()
    if not reason:
        raise DomainError(StaffErrorCode.REASON_REQUIRED, _("A reason is required."), status=400, field="reason")
    if user.pk == manager.pk:
        raise DomainError(StaffErrorCode.FORBIDDEN, _("You cannot deactivate your own account."), status=403)
    if not staff_visible_to(manager).filter(pk=user.pk).exists():
        raise DomainError(StaffErrorCode.NOT_FOUND, _("No such staff member."), status=404)
    user = User.objects.select_for_update().get(pk=user.pk)
    codes = list(user.regions.values_list("code", flat=True))
    if not user.is_active:
        return user
    before = _staff_snapshot(user, codes)
    user.is_active = False
    user.save(update_fields=["is_active"])
    audit_record(
        actor=actor,
        action="staff.deactivate",
        object_type="user",
        object_id=user.pk,
        region_code=codes[0] if len(codes) == 1 else "",
        before=before,
        after=_staff_snapshot(user, codes),
        reason=reason[:128],
    )
    return user
