"""Money as yuan on the settlement screens."""

from django import template

from portal.money import format_yuan

register = template.Library()


@register.filter
def yuan(fen: int | None) -> str:
    return format_yuan(fen)
