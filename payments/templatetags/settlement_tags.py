"""Money as yuan, and the citizen page's year-usage block (insurance does not import payments)."""

from django import template

from payments.selectors_settlements import citizen_account, citizen_year_usage

register = template.Library()


def format_yuan(fen: int | None) -> str:
    """Integer fen as yuan with two decimals and thousands separators: 123456 -> "1,234.56" (no float)."""
    if fen is None:
        return "—"
    fen = int(fen)
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


@register.filter
def yuan(fen: int | None) -> str:
    return format_yuan(fen)


@register.inclusion_tag("insurance/_citizen_usage.html", takes_context=True)
def citizen_usage(context, citizen) -> dict:
    """The current year's usage and the personal account's ledger (entries paginated by `ledger_page`)."""
    request = context["request"]
    return {"citizen": citizen, "usage": citizen_year_usage(citizen),
            "account": citizen_account(citizen, request.GET.get("ledger_page"))}
