"""The export buttons of the list screens."""

from django import template

from portal import exports

register = template.Library()


@register.inclusion_tag("portal/_export_buttons.html", takes_context=True)
def export_buttons(context) -> dict:
    """CSV and XLSX links carrying the list's current filters (never the page number)."""
    request = context["request"]
    return {
        "may_export": exports.may_export(request.user),
        "querystring": context.get("querystring", ""),
        "max_rows": exports.max_rows(),
    }
