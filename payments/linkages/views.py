"""Ending a wallet linkage on a clerk's screen, and the sandbox receipts page.

A linkage is recorded only by its partner, through the API, after the partner's own
real-name check; no screen records one."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from payments.linkages import selectors, services
from payments.linkages.forms import LinkageUnlinkForm
from payments.models import LinkageEndReason, LinkageState, WalletLinkage
from portal import exports
from portal.actors import Actor
from portal.audit_labels import event_type_label
from portal.models import Role
from portal.screens import paginate, region_data_required, require_citizen_writer, two_step


def _get_linkage_for_user(user, public_id: str) -> WalletLinkage:
    try:
        return selectors.linkages_visible_to(user).get(public_id=public_id)
    except WalletLinkage.DoesNotExist as exc:
        raise Http404 from exc


@region_data_required
def linkage_unlink(request: HttpRequest, public_id: str) -> HttpResponse:
    linkage = _get_linkage_for_user(request.user, public_id)
    require_citizen_writer(request.user)
    if linkage.state != LinkageState.ACTIVE:
        messages.error(request, _("This wallet linkage has already ended."))
        return redirect("citizen_detail", pk=linkage.citizen_id)
    form = LinkageUnlinkForm(request.POST or None)

    def perform(data: dict) -> HttpResponse:
        services.linkage_unlink(
            actor=Actor.for_request(request), linkage=linkage, reason=LinkageEndReason.CLERK, note=data["note"]
        )
        messages.success(request, _("The wallet linkage has been ended."))
        return redirect("citizen_detail", pk=linkage.citizen_id)

    return two_step(
        request,
        form=form,
        template="payments/linkage_unlink.html",
        perform=perform,
        context={"linkage": linkage, "citizen": linkage.citizen},
    )


SANDBOX_COLUMNS = [
    exports.Column(gettext_lazy("Received at"), lambda r: r.received_at),
    exports.Column(gettext_lazy("Partner"), lambda r: r.partner_code),
    exports.Column(gettext_lazy("Event type"), lambda r: event_type_label(r.event_type)),
    exports.Column(gettext_lazy("Event ID"), lambda r: r.event_id),
    exports.Column(gettext_lazy("Signature"), lambda r: _("valid") if r.signature_valid else _("invalid")),
]


@region_data_required
def sandbox_receipts(request: HttpRequest) -> HttpResponse:
    if request.user.role not in {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN}:
        raise PermissionDenied
    receipts = selectors.sandbox_receipts()
    if fmt := exports.requested_format(request):
        return exports.export_response(
            request, list_name="sandbox-receipts", queryset=receipts, columns=SANDBOX_COLUMNS, fmt=fmt
        )
    page = paginate(request, receipts, per_page=50)
    return render(request, "payments/sandbox_receipts.html", {"page": page})
