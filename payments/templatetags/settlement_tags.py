"""Money as yuan, and the citizen page's year-usage block (insurance does not import payments)."""

from django import template

from payments.settlements.selectors import citizen_account, citizen_year_usage
from portal.money import format_yuan

register = template.Library()


@register.filter
def yuan(fen: int | None) -> str:
    return format_yuan(fen)


@register.inclusion_tag("insurance/_citizen_usage.html", takes_context=True)
def citizen_usage(context, citizen) -> dict:
    """The current year's usage and the personal account's ledger (entries paginated by `ledger_page`)."""
    request = context["request"]
    return {
        "citizen": citizen,
        "usage": citizen_year_usage(citizen),
        "account": citizen_account(citizen, request.GET.get("ledger_page")),
    }
