"""The export buttons of the list screens."""

from django import template

from portal import exports

register = template.Library()


@register.inclusion_tag("portal/_export_buttons.html", takes_context=True)
def export_buttons(context, filters: bool = True) -> dict:
    """CSV and XLSX buttons of a form that POSTs the format, with the CSRF token, to the list's
    URL carrying its current filters (never the page number). `filters=False` on a list without
    filters, whose note then does not speak of "the filters above"."""
    request = context["request"]
    querystring = context.get("querystring", "")
    return {
        "may_export": exports.may_export(request.user),
        "filters": filters,
        "action": f"{request.path}?{querystring}" if querystring else request.path,
        "max_rows": exports.max_rows(),
        "csrf_token": context.get("csrf_token"),
    }
