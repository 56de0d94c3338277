"""Which audit-log objects link to which screen (portal/audit_links.py), each only
where the reader passes that screen's own checks: its role and its region scope."""

from django.urls import reverse

from insurance.selectors import certificates_visible_to, citizens_visible_to
from payments.models import Partner
from portal import audit_links
from portal.models import Role
from portal.selectors import staff_visible_to


def _numeric(ids: list[str]) -> list[int]:
    return [int(i) for i in ids if i.isdigit()]


def citizen_urls(user, ids: list[str]) -> dict[str, str]:
    if not getattr(user, "sees_region_data", False):
        return {}
    pks = citizens_visible_to(user).filter(pk__in=_numeric(ids)).values_list("pk", flat=True)
    return {str(pk): reverse("citizen_detail", args=[pk]) for pk in pks}


def certificate_urls(user, numbers: list[str]) -> dict[str, str]:
    """An e-card has no page of its own: it links to its citizen's."""
    if not getattr(user, "sees_region_data", False):
        return {}
    rows = certificates_visible_to(user).filter(number__in=numbers).values_list("number", "citizen_id")
    return {number: reverse("citizen_detail", args=[citizen_id]) for number, citizen_id in rows}


def partner_urls(user, codes: list[str]) -> dict[str, str]:
    # payments/partners/views.py: partner_reader_required
    if getattr(user, "role", None) not in {Role.NATIONAL_OPERATOR, Role.SECURITY_OFFICER}:
        return {}
    found = Partner.objects.filter(code__in=codes).values_list("code", flat=True)
    return {code: reverse("partner_detail", args=[code]) for code in found}


def staff_urls(user, ids: list[str]) -> dict[str, str]:
    """A staff account has no page of its own: the staff list, for a manager who sees the account."""
    if not getattr(user, "can_manage_staff", False):  # portal/screens.py: staff_manager_required
        return {}
    pks = staff_visible_to(user).filter(pk__in=_numeric(ids)).values_list("pk", flat=True)
    return {str(pk): reverse("staff_list") for pk in pks}


def register() -> None:
    audit_links.register("citizen", citizen_urls)
    audit_links.register("certificate", certificate_urls)
    audit_links.register("partner", partner_urls)
    audit_links.register("user", staff_urls)
