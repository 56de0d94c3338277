"""Settlement screens (list and detail) and the risk-review queue.

Settlements: clerks, administrators and auditors of the citizen's region.
Risk review: administrators decide, auditors read, clerks are refused (403).
Outside the user's regions every object answers 404, like a missing one.
"""

from collections.abc import Callable
from decimal import Decimal
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from insurance.models import ServiceCategory
from payments.models import Partner, RiskFlag, RiskFlagState, RiskRule, Settlement, SettlementState
from payments.risk import services as risk
from payments.settlements import selectors
from portal import exports
from portal.actors import Actor
from portal.models import Role
from portal.money import format_yuan
from portal.screens import paginate, querystring_without_page, state_param, two_step

RISK_READERS = {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.AUDITOR}
RISK_DECIDERS = {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN}


def _yuan_to_fen(value: Decimal | None) -> int | None:
    return None if value is None else int(value * 100)


class SettlementFilterForm(forms.Form):
    facility = forms.CharField(label=gettext_lazy("Facility code"), max_length=32, required=False)
    partner = forms.ChoiceField(label=gettext_lazy("Partner"), required=False)
    state = forms.ChoiceField(
        label=gettext_lazy("State"), required=False, choices=[("", gettext_lazy("Any")), *SettlementState.choices]
    )
    date_from = forms.DateField(
        label=gettext_lazy("From (date)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=gettext_lazy("To (date)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    amount_min = forms.DecimalField(
        label=gettext_lazy("Total from (yuan)"), required=False, min_value=0, max_digits=12, decimal_places=2
    )
    amount_max = forms.DecimalField(
        label=gettext_lazy("Total to (yuan)"), required=False, min_value=0, max_digits=12, decimal_places=2
    )
    sort = forms.ChoiceField(
        label=gettext_lazy("Sort"),
        required=False,
        choices=[
            ("-created", gettext_lazy("Newest first")),
            ("created", gettext_lazy("Oldest first")),
            ("-total", gettext_lazy("Largest total first")),
            ("total", gettext_lazy("Smallest total first")),
        ],
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["partner"].choices = [("", _("Any")), *Partner.objects.order_by("code").values_list("code", "name")]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", _("The end date is before the start date."))
        low, high = data.get("amount_min"), data.get("amount_max")
        if low is not None and high is not None and low > high:
            self.add_error("amount_max", _("The upper amount is below the lower amount."))
        return data

    def query(self) -> selectors.SettlementQuery:
        data = self.cleaned_data
        return selectors.SettlementQuery(
            facility=data["facility"].strip(),
            partner=data["partner"],
            state=data["state"],
            date_from=data["date_from"],
            date_to=data["date_to"],
            amount_min_fen=_yuan_to_fen(data["amount_min"]),
            amount_max_fen=_yuan_to_fen(data["amount_max"]),
            sort=data["sort"] or "-created",
        )


# Exports are lists: names and identity numbers masked for every role (portal/exports.py).
SETTLEMENT_COLUMNS = [
    exports.Column(gettext_lazy("Created at"), lambda s: s.created_at),
    exports.Column(gettext_lazy("Settlement"), lambda s: s.public_id),
    exports.Column(gettext_lazy("Citizen"), lambda s: s.citizen.name_masked),
    exports.Column(gettext_lazy("Identity number"), lambda s: s.citizen.id_number_masked),
    exports.Column(gettext_lazy("Region"), lambda s: s.citizen.region_id),
    exports.Column(gettext_lazy("Facility code"), lambda s: s.facility.code),
    exports.Column(gettext_lazy("Facility"), lambda s: s.facility.name_zh),
    exports.Column(gettext_lazy("Partner"), lambda s: s.partner.name),
    exports.Column(gettext_lazy("Partner transaction ID"), lambda s: s.partner_transaction_id),
    exports.Column(gettext_lazy("State"), lambda s: s.get_state_display()),
    exports.Column(gettext_lazy("Total (yuan)"), lambda s: exports.yuan(s.total_fen)),
    exports.Column(gettext_lazy("Fund (yuan)"), lambda s: exports.yuan(s.fund_fen)),
    exports.Column(gettext_lazy("Personal account (yuan)"), lambda s: exports.yuan(s.account_fen)),
    exports.Column(gettext_lazy("Self-pay (yuan)"), lambda s: exports.yuan(s.self_pay_fen)),
]
RISK_COLUMNS = [
    exports.Column(gettext_lazy("Raised at"), lambda f: f.created_at),
    exports.Column(gettext_lazy("Day"), lambda f: f.day),
    exports.Column(gettext_lazy("Rule"), lambda f: f.get_rule_display()),
    exports.Column(gettext_lazy("Subject"), lambda f: f.subject_id),
    exports.Column(gettext_lazy("Citizen"), lambda f: f.citizen.name_masked if f.citizen else ""),
    exports.Column(gettext_lazy("Identity number"), lambda f: f.citizen.id_number_masked if f.citizen else ""),
    exports.Column(gettext_lazy("Region"), lambda f: f.region_id),
    exports.Column(gettext_lazy("State"), lambda f: f.get_state_display()),
    exports.Column(gettext_lazy("Decided by"), lambda f: f.decided_by),
    exports.Column(gettext_lazy("Decision note"), lambda f: f.decision_note),
]


@login_required
def settlement_list(request: HttpRequest) -> HttpResponse:
    form = SettlementFilterForm(request.GET or None)
    if not request.GET:
        rows = selectors.settlement_list(request.user, selectors.SettlementQuery())
    elif form.is_valid():
        rows = selectors.settlement_list(request.user, form.query())
    else:
        rows = Settlement.objects.none()  # the errors are shown next to the fields
    if fmt := exports.requested_format(request):
        return exports.export_response(
            request, list_name="settlements", queryset=rows, columns=SETTLEMENT_COLUMNS, fmt=fmt
        )
    return render(
        request,
        "payments/settlement_list.html",
        {
            "form": form,
            "page": paginate(request, rows),
            "querystring": querystring_without_page(request),
        },
    )


@login_required
def settlement_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    try:
        settlement = selectors.settlement_detail(request.user, public_id)
    except Settlement.DoesNotExist as exc:
        raise Http404 from exc
    states = dict(SettlementState.choices)
    categories = dict(ServiceCategory.choices)
    lines = list(settlement.lines.all())
    for line in lines:
        line.category_label = categories.get(line.category, line.category)
    history = [
        {**row, "state_label": states.get(row["state"], row["state"])}
        for row in selectors.settlement_history(settlement)
    ]
    return render(
        request,
        "payments/settlement_detail.html",
        {
            "settlement": settlement,
            "lines": lines,
            "history": history,
        },
    )


# --- Risk review -------------------------------------------------------------------------------


def risk_reader_required(view: Callable) -> Callable:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.user.role not in RISK_READERS:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def _get_flag_for_user(user, pk: int) -> RiskFlag:
    try:
        return selectors.risk_flags_visible_to(user).select_related("region", "citizen").get(pk=pk)
    except RiskFlag.DoesNotExist as exc:
        raise Http404 from exc


@risk_reader_required
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


class RiskDecisionForm(forms.Form):
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
