"""The panels payments adds to the citizen page of insurance (portal/panels.py)."""

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from payments.bindings.services import bindings_of_citizen
from payments.linkages.selectors import linkages_visible_to
from payments.settlements.selectors import citizen_account, citizen_year_usage
from portal import panels


def citizen_usage(request: HttpRequest, citizen) -> dict:
    """The current year's usage and the personal account's ledger (entries paginated by `ledger_page`)."""
    return {
        "citizen": citizen,
        "usage": citizen_year_usage(citizen),
        "account": citizen_account(citizen, request.GET.get("ledger_page")),
    }


def citizen_linkages(request: HttpRequest, citizen) -> dict:
    """The citizen's wallet linkages within the viewer's scope."""
    user = request.user
    linkages = linkages_visible_to(user).filter(citizen=citizen).order_by("-created_at", "-id")
    return {"linkages": list(linkages), "citizen": citizen, "can_write": user.can_write_citizens}


def citizen_bindings(request: HttpRequest, citizen) -> dict:
    """Bindings where the citizen is holder or beneficiary, within the viewer's scope."""
    rows = bindings_of_citizen(request.user, citizen).order_by("-created_at", "-id")
    return {"bindings": list(rows), "citizen": citizen}


def register_panels() -> None:
    panels.register("citizen", panels.Panel(_("Insurance usage"), "payments/_citizen_usage.html", citizen_usage))
    panels.register("citizen", panels.Panel(_("Wallet linkages"), "payments/_citizen_linkages.html", citizen_linkages))
    panels.register(
        "citizen", panels.Panel(_("Family bindings"), "payments/binding_citizen_list.html", citizen_bindings)
    )
