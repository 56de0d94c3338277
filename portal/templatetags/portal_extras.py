"""Template helpers of the portal screens."""

import json

from django import template

from portal import panels
from portal.audit_labels import (
    action_label,
    actor_label,
    delivery_error_label,
    event_type_label,
    object_type_label,
    reason_label,
)
from portal.models import Role

register = template.Library()


@register.simple_tag(takes_context=True)
def page_panels(context, page: str, obj) -> str:
    """The panels other apps registered on `page` (portal/panels.py), e.g. payments' on the citizen page."""
    return panels.render(page, context["request"], obj)


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
def audit_reason(reason: str) -> str:
    """A reason the system gives ("bulk import") translated; a reason a person typed as typed."""
    return reason_label(reason)


@register.filter
def audit_object_type(code: str) -> str:
    """`family_binding` -> "Family binding" (translated); unknown types as stored."""
    return object_type_label(code)


@register.filter
def audit_actor(event) -> str:
    """Who recorded an audit event: a system job by its translated name, anyone else by their name."""
    return actor_label(event.actor_type, event.actor_label)


@register.filter
def partner_event_label(code: str) -> str:
    """`certificate.suspended` -> "E-card suspended" (translated); unknown types as stored."""
    return event_type_label(code)


@register.filter
def delivery_error(text: str) -> str:
    """The delivery worker's fixed error texts translated ("connection failed"); others as stored."""
    return delivery_error_label(text)


@register.filter
def sees_sandbox(user) -> bool:
    return getattr(user, "role", None) in {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN}


@register.simple_tag(takes_context=True)
def nav_active(context, prefix: str) -> str:
    return "active" if context["request"].path.startswith(prefix) else ""
