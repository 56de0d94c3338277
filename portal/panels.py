"""Panels that a higher app adds to a lower app's page.

The citizen page belongs to `insurance`, which never imports `payments`; payments
registers its panels on that page (year usage, wallet linkages, family bindings)
when it is ready, and the page renders whatever is registered, in that order.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe


@dataclass(frozen=True)
class Panel:
    title: str
    template: str
    context: Callable[[HttpRequest, object], dict]


_registry: dict[str, dict[str, Panel]] = {}


def register(page: str, panel: Panel) -> None:
    """Add `panel` to `page` (registering the same template again replaces it)."""
    _registry.setdefault(page, {})[panel.template] = panel


def render(page: str, request: HttpRequest, obj: object) -> SafeString:
    """Every panel registered on `page`, each under its heading."""
    parts = []
    for panel in _registry.get(page, {}).values():
        parts.append(format_html("<h2>{}</h2>", panel.title))
        parts.append(render_to_string(panel.template, panel.context(request, obj), request=request))
    return mark_safe("".join(parts))  # noqa: S308 (each part is escaped by format_html or the template engine)
