"""Template helpers of the portal screens."""

import json

from django import template

from portal.audit_labels import action_label
from portal.models import Role

register = template.Library()


@register.inclusion_tag("payments/_citizen_linkages.html", takes_context=True)
def citizen_linkages(context, citizen) -> dict:
    """The citizen's wallet linkages, read through the payments selector (the
    insurance screens do not import payments)."""
    from payments.selectors import linkages_visible_to

    user = context["request"].user
    linkages = linkages_visible_to(user).filter(citizen=citizen).order_by("-created_at", "-id")
    return {
        "linkages": list(linkages),
        "citizen": citizen,
        "can_write": user.can_write_citizens,
        "request": context["request"],
    }


@register.filter
def pretty_json(text: str) -> str:
    """A JSON document indented for reading; anything else as it is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return text


@register.filter
def audit_action_label(code: str) -> str:
    """`certificate.revoke` -> "E-card revoked" (translated); unknown codes as stored."""
    return action_label(code)


@register.filter
def sees_sandbox(user) -> bool:
    return getattr(user, "role", None) in {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN}


@register.simple_tag(takes_context=True)
def nav_active(context, prefix: str) -> str:
    return "active" if context["request"].path.startswith(prefix) else ""
