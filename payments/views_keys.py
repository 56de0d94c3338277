"""The portal's signing keys on a screen (security officers: separation of duties, DESIGN §2).

The list shows every key partners may meet; "Rotate" and "Activate the next key"
are the two steps of a rotation, each confirmed, each calling the same service
as `rotate_portal_key` (without and with `--activate`), which audits it.
"""

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _

from payments import keys
from payments.models import PortalKey, PortalKeyState
from portal.actors import Actor
from portal.models import Role
from portal.screens import role_required, two_step

security_officer_required = role_required({Role.SECURITY_OFFICER})


@security_officer_required
def portal_key_list(request: HttpRequest) -> HttpResponse:
    rows = keys.published_keys()
    return render(
        request,
        "payments/portal_keys.html",
        {"keys": rows, "has_next": any(k.state == PortalKeyState.NEXT for k in rows)},
    )


def _key_action(
    request: HttpRequest, *, title: str, consequence: str, service: Callable[..., PortalKey], done: str
) -> HttpResponse:
    def perform(data: dict) -> HttpResponse:
        key = service(actor=Actor.for_request(request))
        messages.success(request, done % {"key_id": key.key_id})
        return redirect("portal_key_list")

    return two_step(
        request,
        # Nothing to fill in: any POST is the form sent (bound even when it carries no field).
        form=forms.Form(request.POST if request.method == "POST" else None),
        template="payments/portal_key_action.html",
        perform=perform,
        context={"title": title, "consequence": consequence, "cancel_url": reverse("portal_key_list")},
    )


@security_officer_required
def portal_key_rotate(request: HttpRequest) -> HttpResponse:
    return _key_action(
        request,
        title=_("Rotate the signing key"),
        consequence=_(
            "A new key is made and published as the next key (the first key becomes active at once). "
            "Partners fetch it from GET /api/v1/keys; activate it once they have."
        ),
        service=keys.portal_key_create,
        done=_("Key %(key_id)s has been created."),
    )


@security_officer_required
def portal_key_activate(request: HttpRequest) -> HttpResponse:
    return _key_action(
        request,
        title=_("Activate the next key"),
        consequence=_(
            "Webhooks and API responses will be signed with the next key from now on; "
            "the active key is retired and stays published for verifying what it signed."
        ),
        service=keys.portal_key_activate_next,
        done=_("Key %(key_id)s is now active."),
    )
