"""Partner administration (national operators) and the delivery monitor
(national operators and region administrators).

Partners are national. A region administrator sees every partner's name on
the monitor, but only the events about citizens of their own regions (counts
included); another region's event answers 404. Administration, and pausing or
resuming a partner's deliveries, are for national operators.
"""

from collections.abc import Callable
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from payments import partners
from payments.delivery import outbox_replay
from payments.models import OutboxEvent, OutboxState, Partner, PartnerKey, PartnerKeyState, PartnerKind, PartnerState
from portal import exports
from portal.actors import Actor
from portal.errors import DomainError
from portal.models import Role
from portal.screens import add_domain_error, paginate, querystring_without_page, two_step

MONITOR_ROLES = {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN}


def _role_required(roles: set[str]) -> Callable:
    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if getattr(request.user, "role", None) not in roles:
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


national_required = _role_required({Role.NATIONAL_OPERATOR})
monitor_required = _role_required(MONITOR_ROLES)


def _get_partner(code: str) -> Partner:
    try:
        return Partner.objects.get(code=code)
    except Partner.DoesNotExist as exc:
        raise Http404 from exc


def _get_event_for_user(user, partner: Partner, public_id: str) -> OutboxEvent:
    try:
        return partners.events_visible_to(user, partner).get(public_id=public_id)
    except OutboxEvent.DoesNotExist as exc:
        raise Http404 from exc


# --- Forms ---------------------------------------------------------------------------


class PartnerCreateForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=32,
        help_text=gettext_lazy("Lower-case letters, digits, - and _, e.g. wechat."),
    )
    name = forms.CharField(label=gettext_lazy("Name"), max_length=64)
    kind = forms.ChoiceField(label=gettext_lazy("Kind"), choices=PartnerKind.choices)
    webhook_url = forms.CharField(
        label=gettext_lazy("Webhook URL"),
        max_length=500,
        required=False,
        help_text=gettext_lazy("Empty: the partner only polls GET /api/v1/events."),
    )
    public_key = forms.CharField(
        label=gettext_lazy("Ed25519 public key"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy(
            "PEM, or the standard base64 of its 32 raw bytes. Optional now; keys can be added later."
        ),
    )


class KeyAddForm(forms.Form):
    public_key = forms.CharField(
        label=gettext_lazy("Ed25519 public key"),
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy("PEM, or the standard base64 of its 32 raw bytes."),
    )


class WebhookForm(forms.Form):
    webhook_url = forms.CharField(label=gettext_lazy("Webhook URL"), max_length=500, required=False)

    def clean_webhook_url(self) -> str:
        try:
            return partners.clean_webhook_url(self.cleaned_data["webhook_url"])
        except DomainError as error:
            raise forms.ValidationError(error.message) from None


class RateLimitForm(forms.Form):
    rate_limit_per_second = forms.IntegerField(
        label=gettext_lazy("Requests per second"), min_value=1, max_value=partners.MAX_RATE_LIMIT
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=256, required=False)


class RequiredReasonForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=256)


# --- Partner administration --------------------------------------------------------------


@national_required
def partner_list(request: HttpRequest) -> HttpResponse:
    rows = partners.partners_for_monitor()
    if fmt := exports.requested_format(request):
        return exports.export_response(request, list_name="partners", queryset=rows, columns=PARTNER_COLUMNS, fmt=fmt)
    page = paginate(request, rows, per_page=25)
    return render(request, "payments/partner_list.html", {"page": page})


@national_required
def partner_create(request: HttpRequest) -> HttpResponse:
    form = PartnerCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        actor = Actor.for_request(request)
        try:
            with transaction.atomic():
                partner = partners.partner_create(
                    actor=actor,
                    code=data["code"],
                    name=data["name"],
                    kind=data["kind"],
                    webhook_url=data["webhook_url"],
                )
                if data["public_key"].strip():
                    partners.partner_key_add(actor=actor, partner=partner, public_key=data["public_key"])
        except DomainError as error:
            add_domain_error(form, error)
        else:
            messages.success(request, _("The partner has been registered."))
            return redirect("partner_detail", code=partner.code)
    return render(
        request,
        "payments/partner_form.html",
        {"form": form, "title": _("Register a partner"), "cancel_url": reverse("partner_list")},
    )


@national_required
def partner_detail(request: HttpRequest, code: str) -> HttpResponse:
    partner = _get_partner(code)
    keys = partner.keys.order_by("-state", "created_at", "id")
    counts = partners.event_counts(partners.events_visible_to(request.user, partner))
    return render(request, "payments/partner_detail.html", {"partner": partner, "keys": keys, "counts": counts})


@national_required
def partner_key_add(request: HttpRequest, code: str) -> HttpResponse:
    partner = _get_partner(code)
    form = KeyAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            key = partners.partner_key_add(
                actor=Actor.for_request(request), partner=partner, public_key=form.cleaned_data["public_key"]
            )
        except DomainError as error:
            add_domain_error(form, error)
        else:
            messages.success(request, _("Key %(key_id)s has been added.") % {"key_id": key.key_id})
            return redirect("partner_detail", code=partner.code)
    return render(
        request,
        "payments/partner_form.html",
        {
            "form": form,
            "partner": partner,
            "title": _("Add a key"),
            "cancel_url": reverse("partner_detail", args=[partner.code]),
        },
    )


@national_required
def partner_key_revoke(request: HttpRequest, code: str, key_id: str) -> HttpResponse:
    partner = _get_partner(code)
    try:
        key = partner.keys.get(key_id=key_id, state=PartnerKeyState.ACTIVE)
    except PartnerKey.DoesNotExist as exc:
        raise Http404 from exc

    def perform(data: dict) -> HttpResponse:
        partners.partner_key_revoke(actor=Actor.for_request(request), key=key, reason=data["reason"])
        messages.success(request, _("The key has been revoked."))
        return redirect("partner_detail", code=partner.code)

    return _action(
        request,
        RequiredReasonForm(request.POST or None),
        perform,
        partner=partner,
        title=_("Revoke key %(key_id)s") % {"key_id": key.key_id},
        consequence=_("Requests signed with this key will answer 403 forbidden from now on. This cannot be undone."),
    )


@national_required
def partner_webhook(request: HttpRequest, code: str) -> HttpResponse:
    partner = _get_partner(code)
    form = WebhookForm(request.POST or None, initial={"webhook_url": partner.webhook_url})

    def perform(data: dict) -> HttpResponse:
        partners.partner_set_webhook_url(
            actor=Actor.for_request(request), partner=partner, webhook_url=data["webhook_url"]
        )
        messages.success(request, _("The webhook URL has been changed."))
        return redirect("partner_detail", code=partner.code)

    return _action(
        request,
        form,
        perform,
        partner=partner,
        title=_("Change the webhook URL"),
        consequence=_("Every event not yet delivered, retries included, will be sent to the new URL."),
    )


@national_required
def partner_state(request: HttpRequest, code: str) -> HttpResponse:
    partner = _get_partner(code)
    suspending = partner.state == PartnerState.ACTIVE

    def perform(data: dict) -> HttpResponse:
        service = partners.partner_suspend if suspending else partners.partner_reactivate
        service(actor=Actor.for_request(request), partner=partner, reason=data["reason"])
        messages.success(
            request, _("The partner has been suspended.") if suspending else _("The partner has been reactivated.")
        )
        return redirect("partner_detail", code=partner.code)

    if suspending:
        return _action(
            request,
            RequiredReasonForm(request.POST or None),
            perform,
            partner=partner,
            title=_("Suspend %(name)s") % {"name": partner.name},
            consequence=_(
                "Every request of this partner will answer 403 forbidden until it is reactivated; its wallets cannot be used to pay."
            ),
        )
    return _action(
        request,
        ReasonForm(request.POST or None),
        perform,
        partner=partner,
        title=_("Reactivate %(name)s") % {"name": partner.name},
        consequence=_("The partner's active keys will be accepted again."),
    )


@national_required
def partner_rate_limit(request: HttpRequest, code: str) -> HttpResponse:
    partner = _get_partner(code)
    form = RateLimitForm(request.POST or None, initial={"rate_limit_per_second": partner.rate_limit_per_second})
    if request.method == "POST" and form.is_valid():
        try:
            partners.partner_set_rate_limit(
                actor=Actor.for_request(request),
                partner=partner,
                rate_limit_per_second=form.cleaned_data["rate_limit_per_second"],
            )
        except DomainError as error:
            add_domain_error(form, error)
        else:
            messages.success(request, _("The rate limit has been changed."))
            return redirect("partner_detail", code=partner.code)
    return render(
        request,
        "payments/partner_form.html",
        {
            "form": form,
            "partner": partner,
            "title": _("Rate limit"),
            "cancel_url": reverse("partner_detail", args=[partner.code]),
        },
    )


def _action(
    request: HttpRequest,
    form: forms.Form,
    perform: Callable[[dict], HttpResponse],
    *,
    partner: Partner,
    title: str,
    consequence: str,
    cancel_url: str | None = None,
) -> HttpResponse:
    """A consequential action: the form, then a confirmation restating it, then the service."""
    return two_step(
        request,
        form=form,
        template="payments/partner_action.html",
        perform=perform,
        context={
            "partner": partner,
            "title": title,
            "consequence": consequence,
            "cancel_url": cancel_url or reverse("partner_detail", args=[partner.code]),
        },
    )


# --- Delivery monitor ---------------------------------------------------------------

PARTNER_COLUMNS = [
    exports.Column(gettext_lazy("Code"), lambda p: p.code),
    exports.Column(gettext_lazy("Name"), lambda p: p.name),
    exports.Column(gettext_lazy("Kind"), lambda p: p.get_kind_display()),
    exports.Column(gettext_lazy("State"), lambda p: p.get_state_display()),
    exports.Column(gettext_lazy("Deliveries"), lambda p: _("paused") if p.deliveries_paused else _("running")),
    exports.Column(gettext_lazy("Pending"), lambda p: p.pending_count),
    exports.Column(gettext_lazy("Failing"), lambda p: p.failing_count),
    exports.Column(gettext_lazy("Dead"), lambda p: p.dead_count),
]
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
    exports.Column(gettext_lazy("Error"), lambda a: a.error),
]
EVENT_COLUMNS = [
    exports.Column(gettext_lazy("Created at"), lambda e: e.created_at),
    exports.Column(gettext_lazy("Event ID"), lambda e: e.public_id),
    exports.Column(gettext_lazy("Event type"), lambda e: e.type),
    exports.Column(gettext_lazy("State"), lambda e: e.get_state_display()),
    exports.Column(gettext_lazy("Attempts"), lambda e: e.attempts),
    exports.Column(gettext_lazy("Last status"), lambda e: e.last_status),
    exports.Column(gettext_lazy("Last error"), lambda e: e.last_error),
    exports.Column(gettext_lazy("Next attempt"), lambda e: e.next_attempt_at),
]


@monitor_required
def monitor_index(request: HttpRequest) -> HttpResponse:
    if fmt := exports.requested_format(request):
        # Partners are few: their counts (scoped to the user's regions) are read partner by partner.
        counted = [
            (partner, partners.event_counts(partners.events_visible_to(request.user, partner)))
            for partner in Partner.objects.order_by("code")
        ]
        return exports.export_response(
            request, list_name="delivery-monitor", queryset=counted, columns=MONITOR_COLUMNS, fmt=fmt
        )
    page = paginate(request, Partner.objects.order_by("code"), per_page=25)
    rows = [(partner, partners.event_counts(partners.events_visible_to(request.user, partner))) for partner in page]
    return render(request, "payments/monitor_index.html", {"page": page, "rows": rows})


@monitor_required
def monitor_partner(request: HttpRequest, code: str) -> HttpResponse:
    partner = _get_partner(code)
    events = partners.events_visible_to(request.user, partner)
    counts = partners.event_counts(events)
    state = request.GET.get("state", "")
    if state == "failing":
        events = events.filter(state=OutboxState.PENDING, attempts__gt=0)
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
    partner = _get_partner(code)
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
    partner = _get_partner(code)
    event = _get_event_for_user(request.user, partner, public_id)
    if event.state != OutboxState.DEAD:
        messages.error(request, _("Only a dead event can be replayed."))
        return redirect("monitor_event", code=partner.code, public_id=event.public_id)

    def perform(data: dict) -> HttpResponse:
        outbox_replay(actor=Actor.for_request(request), event=event, reason=data["reason"])
        messages.success(request, _("The event will be delivered again."))
        return redirect("monitor_event", code=partner.code, public_id=event.public_id)

    return _action(
        request,
        ReasonForm(request.POST or None),
        perform,
        partner=partner,
        title=_("Replay event %(event)s") % {"event": event.public_id},
        consequence=_(
            "The event becomes pending and is delivered again now, with the whole retry schedule ahead of it."
        ),
        cancel_url=reverse("monitor_event", args=[partner.code, event.public_id]),
    )


@national_required
def monitor_deliveries(request: HttpRequest, code: str) -> HttpResponse:
    partner = _get_partner(code)
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
    return _action(
        request,
        ReasonForm(request.POST or None),
        perform,
        partner=partner,
        title=title,
        consequence=consequence,
        cancel_url=reverse("monitor_partner", args=[partner.code]),
    )
