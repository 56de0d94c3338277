"""The one place that decides which regions a person may see.

Every screen, search, export and API read starts from a queryset restricted
here; an object outside the scope then answers 404 like a missing one.
"""

from django.db.models import QuerySet

from portal.models import Region, Role


def visible_region_codes(user) -> list[str] | None:
    """Region codes the user may see, or None for every region."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    if user.role == Role.NATIONAL_OPERATOR:
        return None
    if user.role == Role.SECURITY_OFFICER:
        # National, but its duty is keys, not the regions' data: no region's rows.
        return []
    return list(user.regions.values_list("code", flat=True))


def restrict_to_user_regions(queryset: QuerySet, user, region_field: str = "region") -> QuerySet:
    return restrict_to_region_codes(queryset, visible_region_codes(user), region_field)


def restrict_to_region_codes(queryset: QuerySet, codes: list[str] | None, region_field: str = "region") -> QuerySet:
    """The same restriction with `visible_region_codes(user)` already read, for a screen that
    scopes several querysets at once (the menu's counts) and so asks for the user's regions once."""
    if codes is None:
        return queryset
    return queryset.filter(**{f"{region_field}__in": codes})


def regions_visible_to(user) -> QuerySet:
    return restrict_to_user_regions(Region.objects.all(), user, region_field="code")


def user_may_see_region(user, region_code: str) -> bool:
    codes = visible_region_codes(user)
    return codes is None or region_code in codes
