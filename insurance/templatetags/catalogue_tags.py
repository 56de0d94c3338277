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
    """A share as "75 %", with a no-break space: a narrow column never leaves the % alone on a line."""
    value = format_percent(fraction)
    return f"{value}\u00a0%" if value else ""
