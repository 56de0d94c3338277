"""Family-binding screens for clerks: the queue of pending bindings of their regions
(by the beneficiary's region), a binding's detail, and approve / reject / revoke
with a reason and a confirmation step. Outside the user's regions: 404."""

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from payments.bindings import services as bindings
from payments.models import BindingEndReason, BindingState, FamilyBinding
from portal import exports
from portal.actors import Actor
from portal.replica import replica_reads
from portal.screens import (
    paginate,
    querystring_without_page,
    region_data_required,
    require_citizen_writer,
    state_param,
    two_step,
)
from portal.text import PlainTextForm


class BindingDecisionForm(PlainTextForm):
    note = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=128,
        error_messages={"required": gettext_lazy("A reason is required.")},
        widget=forms.TextInput(attrs={"size": 60}),
    )

    def clean_note(self) -> str:
        note = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError(gettext_lazy("A reason is required."))
        return note


BINDING_ACTIONS: dict[str, dict] = {
    "approve": {
        "label": gettext_lazy("Approve family binding"),
        "effect": gettext_lazy(
            "The binding becomes active: the holder may present the beneficiary's e-card in the "
            "wallet. An e-card pending activation becomes active. The partner is notified."
        ),
        "states": (BindingState.PENDING,),
    },
    "reject": {
        "label": gettext_lazy("Reject family binding"),
        "effect": gettext_lazy("The binding is rejected for good and the partner is notified."),
        "states": (BindingState.PENDING,),
    },
    "revoke": {
        "label": gettext_lazy("End family binding"),
        "effect": gettext_lazy(
            "The binding ends: the holder can no longer present the beneficiary's e-card. The partner is notified."
        ),
        # A pending request is rejected, not ended: only an active binding is ended.
        "states": (BindingState.ACTIVE,),
    },
}


# Exports are lists: names and identity numbers masked for every role (portal/exports.py).
BINDING_COLUMNS = [
    exports.Column(gettext_lazy("Binding"), lambda b: b.public_id),
    exports.Column(gettext_lazy("Requested at"), lambda b: b.created_at),
    exports.Column(gettext_lazy("Beneficiary"), lambda b: b.beneficiary.name_masked),
    exports.Column(gettext_lazy("Identity number"), lambda b: b.beneficiary.id_number_masked),
    exports.RegionColumn(gettext_lazy("Region"), lambda b: b.beneficiary.region_id),
    exports.Column(gettext_lazy("Holder"), lambda b: b.holder_citizen.name_masked),
    exports.Column(gettext_lazy("Relationship"), lambda b: b.get_relationship_display()),
    exports.Column(gettext_lazy("Partner"), lambda b: b.partner.name),
    exports.Column(gettext_lazy("State"), lambda b: b.get_state_display()),
]


def _get_binding_for_user(user, public_id: str) -> FamilyBinding:
    try:
        return bindings.bindings_visible_to(user).get(public_id=public_id)
    except FamilyBinding.DoesNotExist as exc:
        raise Http404 from exc


def _next_pending(request: HttpRequest) -> HttpResponse:
    """After a decision the clerk goes on with the queue: its oldest pending request, or the
    queue itself when none is left."""
    following = (
        bindings.bindings_visible_to(request.user)
        .filter(state=BindingState.PENDING)
        .order_by("created_at", "id")
        .values_list("public_id", flat=True)
        .first()
    )
    if following:
        return redirect("binding_detail", public_id=following)
    return redirect("binding_queue")


@region_data_required
@replica_reads
def binding_queue(request: HttpRequest) -> HttpResponse:
    """Bindings of the user's regions, pending ones by default, oldest first (the first to time out)."""
    state = state_param(request, BindingState.values, BindingState.PENDING)
    queryset = bindings.bindings_visible_to(request.user).filter(state=state).order_by("created_at", "id")
    if fmt := exports.requested_format(request):
        return exports.export_response(
            request,
            list_name="family-bindings",
            queryset=queryset,
            columns=BINDING_COLUMNS,
            fmt=fmt,
            filters={"state": state},
        )
    page = paginate(request, queryset)
    return render(
        request,
        "payments/binding_queue.html",
        {
            "page": page,
            "state": state,
            "states": BindingState.choices,
            "querystring": querystring_without_page(request),
        },
    )


@region_data_required
def binding_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    binding = _get_binding_for_user(request.user, public_id)
    can_write = request.user.can_write_citizens
    actions = [(key, spec["label"]) for key, spec in BINDING_ACTIONS.items() if binding.state in spec["states"]]
    return render(
        request,
        "payments/binding_detail.html",
        {
            "binding": binding,
            "actions": actions if can_write else [],
            "card": binding.beneficiary.current_certificate(),
        },
    )


@region_data_required
def binding_action(request: HttpRequest, public_id: str, action: str) -> HttpResponse:
    binding = _get_binding_for_user(request.user, public_id)
    if action not in BINDING_ACTIONS:
        raise Http404
    require_citizen_writer(request.user)
    spec = BINDING_ACTIONS[action]
    if binding.state not in spec["states"]:
        messages.error(
            request,
            _("This family binding is %(state)s: it cannot be changed this way.")
            % {"state": binding.get_state_display()},
        )
        return redirect("binding_detail", public_id=binding.public_id)
    form = BindingDecisionForm(request.POST or None)

    def perform(data: dict) -> HttpResponse:
        actor = Actor.for_request(request)
        if action == "approve":
            bindings.family_binding_approve(actor=actor, binding=binding, note=data["note"])
            messages.success(request, _("The family binding has been approved."))
            return _next_pending(request)
        if action == "reject":
            bindings.family_binding_reject(actor=actor, binding=binding, note=data["note"])
            messages.success(request, _("The family binding has been rejected."))
            return _next_pending(request)
        bindings.family_binding_revoke(actor=actor, binding=binding, reason=BindingEndReason.CLERK, note=data["note"])
        messages.success(request, _("The family binding has been ended."))
        return redirect("binding_detail", public_id=binding.public_id)

    return two_step(
        request,
        form=form,
        template="payments/binding_action.html",
        perform=perform,
        context={
            "binding": binding,
            "action": action,
            "label": spec["label"],
            "effect": spec["effect"],
        },
    )
