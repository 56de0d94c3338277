"""The risk-review queue: administrators decide, auditors read, clerks are refused (403).
Outside the user's regions a flag answers 404, like a missing one.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from payments.models import RiskFlag, RiskFlagState, RiskRule
from payments.risk import selectors
from payments.risk import services as risk
from portal import exports
from portal.actors import Actor
from portal.models import Role
from portal.money import format_yuan
from portal.replica import replica_reads
from portal.screens import paginate, querystring_without_page, role_required, state_param, two_step
from portal.text import PlainTextForm

RISK_READERS = {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.AUDITOR}
RISK_DECIDERS = {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN}

RISK_COLUMNS = [
    exports.Column(gettext_lazy("Raised at"), lambda f: f.created_at),
    exports.Column(gettext_lazy("Day"), lambda f: f.day),
    exports.Column(gettext_lazy("Rule"), lambda f: f.get_rule_display()),
    exports.Column(gettext_lazy("Subject"), lambda f: f.subject_id),
    exports.Column(gettext_lazy("Citizen"), lambda f: f.citizen.name_masked if f.citizen else ""),
    exports.Column(gettext_lazy("Identity number"), lambda f: f.citizen.id_number_masked if f.citizen else ""),
    exports.RegionColumn(gettext_lazy("Region"), lambda f: f.region_id),
    exports.Column(gettext_lazy("State"), lambda f: f.get_state_display()),
    exports.Column(gettext_lazy("Decided by"), lambda f: f.decided_by),
    exports.Column(gettext_lazy("Decision note"), lambda f: f.decision_note),
]


risk_reader_required = role_required(RISK_READERS)


def _get_flag_for_user(user, pk: int) -> RiskFlag:
    try:
        return selectors.risk_flags_visible_to(user).select_related("region", "citizen").get(pk=pk)
    except RiskFlag.DoesNotExist as exc:
        raise Http404 from exc


@risk_reader_required
@replica_reads
def risk_queue(request: HttpRequest) -> HttpResponse:
    state = state_param(request, RiskFlagState.values, RiskFlagState.OPEN)
    rule = request.GET.get("rule", "")
    rows = selectors.risk_flags_visible_to(request.user).filter(state=state).select_related("region", "citizen")
    if rule in RiskRule.values:
        rows = rows.filter(rule=rule)
    rows = rows.order_by("created_at", "id")
    if fmt := exports.requested_format(request):
        return exports.export_response(
            request,
            list_name="risk-flags",
            queryset=rows,
            columns=RISK_COLUMNS,
            fmt=fmt,
            filters={"state": state, **({"rule": rule} if rule in RiskRule.values else {})},
        )
    return render(
        request,
        "payments/risk_queue.html",
        {
            "page": paginate(request, rows),
            "state": state,
            "rule": rule,
            "states": RiskFlagState.choices,
            "rules": RiskRule.choices,
            "querystring": querystring_without_page(request),
        },
    )


def _evidence_value(key: str, value: object) -> str:
    """Amounts in fen as yuan, lists as comma-separated text."""
    if key.endswith("_fen") and isinstance(value, int):
        unit = _("yuan")  # outside the f-string, where makemessages can see it
        return f"{format_yuan(value)} ({unit})"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


@risk_reader_required
def risk_detail(request: HttpRequest, pk: int) -> HttpResponse:
    flag = _get_flag_for_user(request.user, pk)
    evidence = {
        key.removesuffix("_fen"): _evidence_value(key, value)
        for key, value in flag.evidence.items()
        if key != "settlements"
    }
    return render(
        request,
        "payments/risk_detail.html",
        {
            "flag": flag,
            "evidence": evidence,
            "settlement_ids": flag.evidence.get("settlements", []),
            "can_decide": request.user.role in RISK_DECIDERS and flag.state == RiskFlagState.OPEN,
        },
    )


class RiskDecisionForm(PlainTextForm):
    decision = forms.ChoiceField(
        label=gettext_lazy("Decision"),
        widget=forms.RadioSelect,
        choices=[
            ("dismiss", gettext_lazy("Dismiss: nothing wrong")),
            ("confirm", gettext_lazy("Confirm: refer for follow-up")),
        ],
    )
    note = forms.CharField(
        label=gettext_lazy("Note"),
        max_length=256,
        error_messages={"required": gettext_lazy("A note is required.")},
        widget=forms.TextInput(attrs={"size": 60}),
    )

    def clean_note(self) -> str:
        note = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError(gettext_lazy("A note is required."))
        return note


@risk_reader_required
def risk_decide(request: HttpRequest, pk: int) -> HttpResponse:
    flag = _get_flag_for_user(request.user, pk)
    if request.user.role not in RISK_DECIDERS:
        raise PermissionDenied
    if flag.state != RiskFlagState.OPEN:
        messages.error(request, _("This flag has already been decided."))
        return redirect("risk_detail", pk=flag.pk)
    form = RiskDecisionForm(request.POST or None)

    def perform(data: dict) -> HttpResponse:
        risk.risk_flag_decide(actor=Actor.for_request(request), flag=flag, decision=data["decision"], note=data["note"])
        messages.success(request, _("The decision has been recorded."))
        return redirect("risk_detail", pk=flag.pk)

    decision_labels = dict(RiskDecisionForm.base_fields["decision"].choices)
    return two_step(
        request,
        form=form,
        template="payments/risk_decide.html",
        perform=perform,
        context={
            "flag": flag,
            "decision_label": decision_labels.get(request.POST.get("decision", ""), ""),
        },
    )
