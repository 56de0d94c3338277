"""Money and percentage display for the catalogue and policy screens."""

from django import template

from insurance.catalogue import format_percent, format_yuan

register = template.Library()


@register.filter
def yuan(fen: int | None) -> str:
    return format_yuan(fen)


@register.filter
def percent(fraction) -> str:
    value = format_percent(fraction)
    return f"{value} %" if value else ""
