"""Partner administration: national operators register partners and set their webhook,
state and rate limit; security officers add and revoke their keys (separation of duties,
DESIGN §2). Both read the list and a partner's page.

The delivery monitor's screens are in payments/delivery/views.py.
"""

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from payments.delivery import selectors as delivery_selectors
from payments.models import Partner, PartnerKey, PartnerKeyState, PartnerKind, PartnerState
from payments.partners import services as partners
from portal import exports
from portal.actors import Actor
from portal.errors import DomainError
from portal.models import Role
from portal.replica import replica_reads
from portal.screens import add_domain_error, paginate, role_required, two_step
from portal.text import PlainTextForm

national_required = role_required({Role.NATIONAL_OPERATOR})
partner_reader_required = role_required({Role.NATIONAL_OPERATOR, Role.SECURITY_OFFICER})
key_holder_required = role_required({Role.SECURITY_OFFICER})


def get_partner_or_404(code: str) -> Partner:
    try:
        return Partner.objects.get(code=code)
    except Partner.DoesNotExist as exc:
        raise Http404 from exc


# --- Forms ---------------------------------------------------------------------------


class PartnerCreateForm(PlainTextForm):
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
    # No key here: a partner's keys are the security officer's to add (partner_key_add).

    # The service checks these too; here they are reported with every other error at once.
    def clean_code(self) -> str:
        code = self.cleaned_data["code"].strip()
        if not partners.CODE_RE.match(code):
            raise forms.ValidationError(
                gettext_lazy("The code is 2 to 32 characters: lower-case letters, digits, - and _.")
            )
        if Partner.objects.filter(code=code).exists():
            raise forms.ValidationError(gettext_lazy("A partner with this code already exists."))
        return code

    def clean_webhook_url(self) -> str:
        try:
            return partners.clean_webhook_url(self.cleaned_data["webhook_url"])
        except DomainError as error:
            raise forms.ValidationError(error.message) from None


class KeyAddForm(forms.Form):
    public_key = forms.CharField(
        label=gettext_lazy("Ed25519 public key"),
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy("PEM, or the standard base64 of its 32 raw bytes."),
    )


class WebhookForm(PlainTextForm):
    webhook_url = forms.CharField(label=gettext_lazy("Webhook URL"), max_length=500, required=False)
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=256)

    def clean_webhook_url(self) -> str:
        try:
            return partners.clean_webhook_url(self.cleaned_data["webhook_url"])
        except DomainError as error:
            raise forms.ValidationError(error.message) from None


class RateLimitForm(PlainTextForm):
    rate_limit_per_second = forms.IntegerField(
        label=gettext_lazy("Requests per second"), min_value=1, max_value=partners.MAX_RATE_LIMIT
    )


class ReasonForm(PlainTextForm):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=256, required=False)


class RequiredReasonForm(PlainTextForm):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=256)


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


# --- Partner administration --------------------------------------------------------------


@partner_reader_required
@replica_reads
def partner_list(request: HttpRequest) -> HttpResponse:
    rows = delivery_selectors.partners_for_monitor()
    if fmt := exports.requested_format(request):
        return exports.export_response(request, list_name="partners", queryset=rows, columns=PARTNER_COLUMNS, fmt=fmt)
    page = paginate(request, rows, per_page=25)
    return render(request, "payments/partner_list.html", {"page": page})


@national_required
def partner_create(request: HttpRequest) -> HttpResponse:
    form = PartnerCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            partner = partners.partner_create(
                actor=Actor.for_request(request),
                code=data["code"],
                name=data["name"],
                kind=data["kind"],
                webhook_url=data["webhook_url"],
            )
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


@partner_reader_required
def partner_detail(request: HttpRequest, code: str) -> HttpResponse:
    partner = get_partner_or_404(code)
    keys = partner.keys.order_by("-state", "created_at", "id")
    operator = request.user.role == Role.NATIONAL_OPERATOR
    # The delivery counts are the operator's; the security officer's page is the keys.
    counts = (
        delivery_selectors.event_counts(delivery_selectors.events_visible_to(request.user, partner))
        if operator
        else None
    )
    return render(
        request,
        "payments/partner_detail.html",
        {"partner": partner, "keys": keys, "counts": counts, "administers": operator, "holds_keys": not operator},
    )


@key_holder_required
def partner_key_add(request: HttpRequest, code: str) -> HttpResponse:
    partner = get_partner_or_404(code)
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


@key_holder_required
def partner_key_revoke(request: HttpRequest, code: str, key_id: str) -> HttpResponse:
    partner = get_partner_or_404(code)
    try:
        key = partner.keys.get(key_id=key_id, state=PartnerKeyState.ACTIVE)
    except PartnerKey.DoesNotExist as exc:
        raise Http404 from exc

    def perform(data: dict) -> HttpResponse:
        partners.partner_key_revoke(actor=Actor.for_request(request), key=key, reason=data["reason"])
        messages.success(request, _("The key has been revoked."))
        return redirect("partner_detail", code=partner.code)

    return partner_action(
        request,
        RequiredReasonForm(request.POST or None),
        perform,
        partner=partner,
        title=_("Revoke key %(key_id)s") % {"key_id": key.key_id},
        consequence=_("Requests signed with this key will answer 403 forbidden from now on. This cannot be undone."),
    )


@national_required
def partner_webhook(request: HttpRequest, code: str) -> HttpResponse:
    partner = get_partner_or_404(code)
    form = WebhookForm(request.POST or None, initial={"webhook_url": partner.webhook_url})

    def perform(data: dict) -> HttpResponse:
        partners.partner_set_webhook_url(
            actor=Actor.for_request(request), partner=partner, webhook_url=data["webhook_url"], reason=data["reason"]
        )
        messages.success(request, _("The webhook URL has been changed."))
        return redirect("partner_detail", code=partner.code)

    return partner_action(
        request,
        form,
        perform,
        partner=partner,
        title=_("Change the webhook URL"),
        consequence=_("Every event not yet delivered, retries included, will be sent to the new URL."),
    )


@national_required
def partner_state(request: HttpRequest, code: str) -> HttpResponse:
    partner = get_partner_or_404(code)
    suspending = partner.state == PartnerState.ACTIVE

    def perform(data: dict) -> HttpResponse:
        service = partners.partner_suspend if suspending else partners.partner_reactivate
        service(actor=Actor.for_request(request), partner=partner, reason=data["reason"])
        messages.success(
            request, _("The partner has been suspended.") if suspending else _("The partner has been reactivated.")
        )
        return redirect("partner_detail", code=partner.code)

    if suspending:
        return partner_action(
            request,
            RequiredReasonForm(request.POST or None),
            perform,
            partner=partner,
            title=_("Suspend %(name)s") % {"name": partner.name},
            consequence=_(
                "Every request of this partner will answer 403 forbidden until it is reactivated; its wallets cannot be used to pay."
            ),
        )
    return partner_action(
        request,
        ReasonForm(request.POST or None),
        perform,
        partner=partner,
        title=_("Reactivate %(name)s") % {"name": partner.name},
        consequence=_("The partner's active keys will be accepted again."),
    )


@national_required
def partner_rate_limit(request: HttpRequest, code: str) -> HttpResponse:
    partner = get_partner_or_404(code)
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


def partner_action(
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
