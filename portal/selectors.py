"""Scoped reads of staff accounts."""

from django.db.models import Count, F, Q, QuerySet

from portal.models import Role, User
from portal.scope import visible_region_codes

# Who creates whom (separation of duties, DESIGN §2): account administration is the national
# operators' duty, so they create every role, security officers and auditors included; the
# other duties' holders (security officers, auditors) create no accounts. A region
# administrator creates its regions' clerks only: the auditors who read its actions are
# not of its making. No screen changes a role once given (one duty per account), so a
# national operator cannot turn itself into a security officer or an auditor.
MANAGEABLE_BY_REGION_ADMIN = (Role.CLERK,)


def roles_manageable_by(user) -> list[str]:
    if user.role == Role.NATIONAL_OPERATOR:
        return list(Role.values)
    if user.role == Role.REGION_ADMIN:
        return list(MANAGEABLE_BY_REGION_ADMIN)
    return []


def staff_visible_to(user) -> QuerySet[User]:
    """Staff a manager may see and manage: everyone for a national operator;
    for a region administrator, clerks all of whose regions are theirs."""
    queryset = User.objects.prefetch_related("regions").order_by("username")
    codes = visible_region_codes(user)
    if codes is None:
        return queryset
    if user.role != Role.REGION_ADMIN:
        return queryset.none()
    return (
        queryset.filter(role__in=MANAGEABLE_BY_REGION_ADMIN)
        .annotate(
            _in_scope=Count("regions", filter=Q(regions__code__in=codes), distinct=True),
            _all=Count("regions", distinct=True),
        )
        .filter(_in_scope__gt=0, _in_scope=F("_all"))
    )
