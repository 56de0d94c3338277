"""Settlement screens (list and detail): clerks, administrators and auditors of the citizen's
region. Outside the user's regions a settlement answers 404, like a missing one. The risk-review
screens are in payments/risk/views.py.
"""

from decimal import Decimal

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from insurance.models import ServiceCategory
from payments.models import Partner, Settlement, SettlementState
from payments.settlements import selectors
from portal import exports
from portal.replica import replica_reads
from portal.screens import paginate, querystring_without_page, region_data_required


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
    exports.RegionColumn(gettext_lazy("Region"), lambda s: s.citizen.region_id),
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


@region_data_required
@replica_reads
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


@region_data_required
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
