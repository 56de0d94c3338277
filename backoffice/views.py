"""The region dashboard and the national overview (read-only counts, no personal data).

Every role that sees the regions' data may open it for the regions it sees
(portal/scope.py): national operators see all regions side by side with their
totals, region administrators, auditors and clerks their own; another region
answers 404. Security officers hold keys, not the regions' figures: 403.
"""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from backoffice.dashboards.charts import bar_chart, line_chart
from backoffice.dashboards.selectors import CARD_STATES, dashboard_for, yuan
from insurance.models import CertificateState
from payments.models import BindingState
from portal.models import RollupWatermark
from portal.replica import replica_reads
from portal.scope import regions_visible_to
from portal.screens import region_data_required


def _yuan_text(value: float) -> str:
    from django.utils.formats import number_format

    return number_format(value, decimal_pos=2, force_grouping=True)


def _render(request: HttpRequest, regions: list, *, single: bool) -> HttpResponse:
    today = timezone.localdate()
    data = dashboard_for(regions, today=today)
    total = data.total
    state_labels = dict(CertificateState.choices)
    charts = {
        "cards": bar_chart(
            title=_("E-cards by state"),
            items=[(str(state_labels[s]), total.cards.get(s, 0)) for s in CARD_STATES],
        ),
        "cards_trend": line_chart(
            title=_("E-cards issued and activated per day, last 90 days"),
            days=data.days,
            series=[(_("Issued"), data.trends["cards_issued"]), (_("Activated"), data.trends["cards_activated"])],
        ),
        "settled_trend": line_chart(
            title=_("Settlements paid per day, last 90 days"),
            days=data.days,
            series=[(_("Settlements"), data.trends["settled"])],
        ),
        "fund_trend": line_chart(
            title=_("Pooled fund spend per day (yuan), last 90 days"),
            days=data.days,
            series=[(_("Fund spend"), [yuan(v) for v in data.trends["fund_net_fen"]])],
            value_text=_yuan_text,
        ),
    }
    if not single and len(data.regions) > 1:
        charts["regions"] = bar_chart(
            title=_("Active citizens by region"),
            items=[(r.name, r.active_citizens) for r in data.regions],
            keys=[r.code for r in data.regions],
        )
    columns = data.regions + ([total] if len(data.regions) > 1 else [])
    rows = [
        (_("Active citizens"), "n", [c.active_citizens for c in columns]),
        (_("Aged 60 and over"), "n", [c.aged_60 for c in columns]),
        (_("Aged 80 and over"), "n", [c.aged_80 for c in columns]),
        (_("Live e-cards"), "n", [c.live_cards for c in columns]),
        (_("Activation rate (%)"), "pct", [c.activation_rate for c in columns]),
        (_("Active wallet linkages"), "n", [c.total_linkages for c in columns]),
        (_("Active family bindings"), "n", [c.bindings.get("active", 0) for c in columns]),
        (_("Family bindings awaiting approval"), "n", [c.bindings.get("pending", 0) for c in columns]),
        (_("Settlements today"), "n", [c.today.settled for c in columns]),
        (_("Fund spend today (yuan)"), "yuan", [c.today.fund_yuan for c in columns]),
        (_("Settlements this month"), "n", [c.month.settled for c in columns]),
        (_("Fund spend this month (yuan)"), "yuan", [c.month.fund_yuan for c in columns]),
        (_("Settlements this year"), "n", [c.year.settled for c in columns]),
        (_("Fund spend this year (yuan)"), "yuan", [c.year.fund_yuan for c in columns]),
    ]
    watermark = RollupWatermark.objects.filter(id=1).values_list("ticked_at", flat=True).first()
    binding_labels = dict(BindingState.choices)
    return render(
        request,
        "portal/dashboard.html",
        {
            "data": data,
            "single": single,
            "columns": columns,
            "rows": rows,
            "charts": charts,
            "card_states": [(s, state_labels[s], total.cards.get(s, 0)) for s in CARD_STATES],
            "binding_states": [(s, label, total.bindings.get(s, 0)) for s, label in binding_labels.items()],
            "updated_at": watermark,
        },
    )


@region_data_required
@replica_reads
def dashboard(request: HttpRequest) -> HttpResponse:
    """Every region the person sees, side by side, with totals."""
    return _render(request, list(regions_visible_to(request.user)), single=False)


@region_data_required
@replica_reads
def dashboard_region(request: HttpRequest, region_code: str) -> HttpResponse:
    region = regions_visible_to(request.user).filter(code=region_code).first()
    if region is None:
        raise Http404
    return _render(request, [region], single=True)
