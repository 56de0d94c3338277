"""Money and percentage display for the catalogue and policy screens."""

from django import template

from insurance.catalogue import format_percent
from portal.money import format_yuan

register = template.Library()


@register.filter
def yuan(fen: int | None) -> str:
    """For reading: grouped, as on the settlement screens ("1,234.56")."""
    return format_yuan(fen, empty="")


@register.filter
def percent(fraction) -> str:
    value = format_percent(fraction)
    return f"{value} %" if value else ""
