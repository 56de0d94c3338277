from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from backoffice.navigation import menu_counts


def navigation(request: HttpRequest) -> dict:
    """`menu_counts` for base.html's menu, read only when a page renders the menu."""
    return {"menu_counts": SimpleLazyObject(lambda: menu_counts(request.user))}
