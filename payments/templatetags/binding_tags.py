"""The family bindings shown on a citizen's page (the insurance screens do not import payments)."""

from django import template

from payments.bindings import bindings_of_citizen

register = template.Library()


@register.inclusion_tag("payments/binding_citizen_list.html", takes_context=True)
def citizen_bindings(context, citizen) -> dict:
    """Bindings where the citizen is holder or beneficiary, within the viewer's scope."""
    user = context["request"].user
    rows = bindings_of_citizen(user, citizen).order_by("-created_at", "-id")
    return {"bindings": list(rows), "citizen": citizen}
