"""The delivery monitor (national operators and region administrators).

Partners are national. A region administrator sees every partner's name on
the monitor, but only the events about citizens of their own regions (counts
included); another region's event answers 404. Pausing or resuming a
partner's deliveries is for national operators.
"""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from payments.delivery import selectors
from payments.delivery.services import outbox_replay
from payments.models import OutboxEvent, OutboxState, Partner
from payments.partners import services as partners
from payments.partners.views import RequiredReasonForm, get_partner_or_404, national_required, partner_action
from portal import exports
from portal.actors import Actor
from portal.audit_labels import delivery_error_label, event_type_label
from portal.models import Role
from portal.replica import replica_reads
from portal.screens import paginate, querystring_without_page, role_required

monitor_required = role_required({Role.NATIONAL_OPERATOR, Role.REGION_ADMIN})


def _get_event_for_user(user, partner: Partner, public_id: str) -> OutboxEvent:
    try:
        return selectors.events_visible_to(user, partner).get(public_id=public_id)
    except OutboxEvent.DoesNotExist as exc:
        raise Http404 from exc


# --- Delivery monitor ---------------------------------------------------------------

MONITOR_COLUMNS = [
    exports.Column(gettext_lazy("Code"), lambda row: row[0].code),
    exports.Column(gettext_lazy("Partner"), lambda row: row[0].name),
    exports.Column(gettext_lazy("Deliveries"), lambda row: _("paused") if row[0].deliveries_paused else _("running")),
    exports.Column(gettext_lazy("Pending"), lambda row: row[1]["pending"]),
    exports.Column(gettext_lazy("Failing"), lambda row: row[1]["failing"]),
    exports.Column(gettext_lazy("Dead"), lambda row: row[1]["dead"]),
    exports.Column(gettext_lazy("Delivered"), lambda row: row[1]["delivered"]),
]
ATTEMPT_COLUMNS = [
    exports.Column(gettext_lazy("Attempt"), lambda a: a.number),
    exports.Column(gettext_lazy("Started at"), lambda a: a.started_at),
    exports.Column(gettext_lazy("Status"), lambda a: a.status_code),
    exports.Column(gettext_lazy("Latency (ms)"), lambda a: a.latency_ms),
    exports.Column(gettext_lazy("Succeeded"), lambda a: a.succeeded),
    exports.Column(gettext_lazy("Error"), lambda a: delivery_error_label(a.error)),
]
EVENT_COLUMNS = [
    exports.Column(gettext_lazy("Created at"), lambda e: e.created_at),
    exports.Column(gettext_lazy("Event ID"), lambda e: e.public_id),
    exports.Column(gettext_lazy("Event type"), lambda e: event_type_label(e.type)),
    exports.Column(gettext_lazy("Code"), lambda e: e.type),  # as the partner's payload names it
    exports.Column(gettext_lazy("State"), lambda e: e.state_label()),
    exports.Column(gettext_lazy("Attempts"), lambda e: e.attempts),
    exports.Column(gettext_lazy("Last status"), lambda e: e.last_status),
    exports.Column(gettext_lazy("Last error"), lambda e: delivery_error_label(e.last_error)),
    exports.Column(gettext_lazy("Next attempt"), lambda e: e.next_attempt_at),
]


@monitor_required
@replica_reads
def monitor_index(request: HttpRequest) -> HttpResponse:
    if fmt := exports.requested_format(request):
        # Partners are few: their counts (scoped to the user's regions) are read partner by partner.
        counted = [
            (partner, selectors.event_counts(selectors.events_visible_to(request.user, partner)))
            for partner in Partner.objects.order_by("code")
        ]
        return exports.export_response(
            request, list_name="delivery-monitor", queryset=counted, columns=MONITOR_COLUMNS, fmt=fmt
        )
    page = paginate(request, Partner.objects.order_by("code"), per_page=25)
    rows = [(partner, selectors.event_counts(selectors.events_visible_to(request.user, partner))) for partner in page]
    return render(request, "payments/monitor_index.html", {"page": page, "rows": rows})


@monitor_required
@replica_reads
def monitor_partner(request: HttpRequest, code: str) -> HttpResponse:
    partner = get_partner_or_404(code)
    events = selectors.events_visible_to(request.user, partner)
    counts = selectors.event_counts(events)
    state = request.GET.get("state", "")
    if state == "failing":
        events = events.filter(state=OutboxState.PENDING, attempts__gt=0)
    elif state == OutboxState.PENDING:
        events = events.filter(state=OutboxState.PENDING, attempts=0)  # as counted: failing ones apart
    elif state in OutboxState.values:
        events = events.filter(state=state)
    else:
        state = ""
    if fmt := exports.requested_format(request):
        return exports.export_response(
            request,
            list_name=f"delivery-events-{partner.code}",
            queryset=events.order_by("-id"),
            columns=EVENT_COLUMNS,
            fmt=fmt,
        )
    page = paginate(request, events.order_by("-id"), per_page=25)
    return render(
        request,
        "payments/monitor_partner.html",
        {
            "partner": partner,
            "counts": counts,
            "page": page,
            "state": state,
            "states": [
                ("", _("All")),
                ("pending", _("Pending")),
                ("failing", _("Failing")),
                ("dead", _("Dead")),
                ("delivered", _("Delivered")),
            ],
            "querystring": querystring_without_page(request),
            "can_pause": request.user.role == Role.NATIONAL_OPERATOR,
        },
    )


@monitor_required
def monitor_event(request: HttpRequest, code: str, public_id: str) -> HttpResponse:
    partner = get_partner_or_404(code)
    event = _get_event_for_user(request.user, partner, public_id)
    attempts = event.delivery_attempts.order_by("-started_at", "-id")
    if fmt := exports.requested_format(request):
        return exports.export_response(
            request,
            list_name=f"delivery-attempts-{event.public_id}",
            queryset=attempts,
            columns=ATTEMPT_COLUMNS,
            fmt=fmt,
        )
    attempts = paginate(request, attempts, per_page=25)
    return render(request, "payments/monitor_event.html", {"partner": partner, "event": event, "page": attempts})


@monitor_required
def monitor_replay(request: HttpRequest, code: str, public_id: str) -> HttpResponse:
    partner = get_partner_or_404(code)
    event = _get_event_for_user(request.user, partner, public_id)
    failing = event.is_failing
    if event.state != OutboxState.DEAD and not failing:
        messages.error(request, _("Only a dead or failing event can be replayed."))
        return redirect("monitor_event", code=partner.code, public_id=event.public_id)

    def perform(data: dict) -> HttpResponse:
        outbox_replay(actor=Actor.for_request(request), event=event, reason=data["reason"])
        messages.success(request, _("The event will be delivered again."))
        return redirect("monitor_event", code=partner.code, public_id=event.public_id)

    if failing:
        title = _("Retry event %(event)s now") % {"event": event.public_id}
        consequence = _("The event is delivered now instead of at its next retry; its retry schedule goes on.")
    else:
        title = _("Replay event %(event)s") % {"event": event.public_id}
        consequence = _(
            "The event becomes pending and is delivered again now, with the whole retry schedule ahead of it."
        )
    return partner_action(
        request,
        RequiredReasonForm(request.POST or None),
        perform,
        partner=partner,
        title=title,
        consequence=consequence,
        cancel_url=reverse("monitor_event", args=[partner.code, event.public_id]),
    )


@national_required
def monitor_deliveries(request: HttpRequest, code: str) -> HttpResponse:
    partner = get_partner_or_404(code)
    pausing = not partner.deliveries_paused

    def perform(data: dict) -> HttpResponse:
        service = partners.partner_pause_deliveries if pausing else partners.partner_resume_deliveries
        service(actor=Actor.for_request(request), partner=partner, reason=data["reason"])
        messages.success(request, _("Deliveries have been paused.") if pausing else _("Deliveries have been resumed."))
        return redirect("monitor_partner", code=partner.code)

    if pausing:
        title = _("Pause deliveries to %(name)s") % {"name": partner.name}
        consequence = _(
            "Webhooks to this partner stop until resumed; events keep accumulating and stay readable through GET /events."
        )
    else:
        title = _("Resume deliveries to %(name)s") % {"name": partner.name}
        consequence = _("Every pending event that is due is delivered now.")
    return partner_action(
        request,
        RequiredReasonForm(request.POST or None),
        perform,
        partner=partner,
        title=title,
        consequence=consequence,
        cancel_url=reverse("monitor_partner", args=[partner.code]),
    )
