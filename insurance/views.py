"""Citizen and e-card screens. Objects come from the scoped selectors; outside
the user's regions they answer 404, like missing ones. Writes go through
insurance.services, each consequential one after a reason and a confirmation."""

import secrets
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from insurance import selectors, services
from insurance.errors import InsuranceErrorCode
from insurance.forms import CitizenEditForm, CitizenRegisterForm, CitizenSearchForm, CitizenStatusForm, ReasonForm
from insurance.models import LIVE_STATES, Certificate, Citizen, CitizenStatus
from portal import exports
from portal.actors import Actor
from portal.errors import DomainError
from portal.masking import mask_id_number, mask_phone
from portal.replica import replica_reads
from portal.screens import (
    add_domain_error,
    citizen_writer_required,
    paginate,
    querystring_without_page,
    region_data_required,
    require_citizen_writer,
    two_step,
)

CARD_ACTIONS: dict[str, dict] = {
    "issue": {
        "label": gettext_lazy("Issue e-card"),
        "effect": gettext_lazy(
            "A new e-card will be issued in the state pending activation; it becomes active when the citizen links it in a wallet."
        ),
        "service": None,
    },
    "suspend": {
        "label": gettext_lazy("Suspend"),
        "effect": gettext_lazy(
            "The e-card will be suspended: it cannot be used for payments until it is reinstated. Partners holding it are notified."
        ),
        "service": services.certificate_suspend,
    },
    "reinstate": {
        "label": gettext_lazy("Reinstate"),
        "effect": gettext_lazy("The e-card will be active again. Partners holding it are notified."),
        "service": services.certificate_reinstate,
    },
    "revoke": {
        "label": gettext_lazy("Revoke"),
        "effect": gettext_lazy(
            "The e-card will be revoked for good: its wallet linkages end and it can never be used again. Partners holding it are notified."
        ),
        "service": services.certificate_revoke,
    },
    "reissue": {
        "label": gettext_lazy("Reissue"),
        "effect": gettext_lazy(
            "The e-card will be ended and a new e-card issued in its place; the new card takes over its wallet linkages and family bindings."
        ),
        "service": services.certificate_reissue,
    },
}


def _get_citizen_for_user(user, pk: int) -> Citizen:
    try:
        return selectors.citizens_visible_to(user).get(pk=pk)
    except Citizen.DoesNotExist as exc:
        raise Http404 from exc


def _get_certificate_for_user(user, pk: int) -> Certificate:
    try:
        return selectors.certificates_visible_to(user).get(pk=pk)
    except Certificate.DoesNotExist as exc:
        raise Http404 from exc


# Exports are lists: masked like the screen's list, for every role (portal/exports.py).
CITIZEN_COLUMNS = [
    exports.Column(gettext_lazy("Identity number"), lambda c: c.id_number_masked),
    exports.Column(pgettext_lazy("person", "Name"), lambda c: c.name_masked),
    exports.Column(gettext_lazy("Phone"), lambda c: c.phone_masked),
    exports.RegionColumn(gettext_lazy("Region"), lambda c: c.region_id),
    exports.Column(gettext_lazy("Scheme"), lambda c: c.get_scheme_display()),
    exports.Column(gettext_lazy("Status"), lambda c: c.get_status_display()),
]

SEARCHES_SESSION_KEY = "citizen_searches"
MAX_REMEMBERED_SEARCHES = 20
# Searches shown masked: the box is left empty and the page carries the search's token.
MASKED_SEARCH_KINDS = ("id_number", "phone")


def _url_without_search(request: HttpRequest) -> str:
    params = {k: request.GET[k] for k in ("region", "status", "scheme") if request.GET.get(k)}
    return f"{reverse('citizen_search')}?{urlencode(params)}" if params else reverse("citizen_search")


def _remember_search(request: HttpRequest, text: str) -> str:
    """Keep a submitted search in the session under a random token, so that an
    identity number or phone never travels in a URL (URLs end up in access logs).
    Only the blind index and a masked display are kept."""
    kind, needle = selectors.parse_search_text(text)
    text = text.strip()
    if kind == "id_number":
        display = mask_id_number(text.upper())
    elif kind == "phone":
        display = mask_phone(text)
    else:
        display = text
    searches = request.session.get(SEARCHES_SESSION_KEY, {})
    token = secrets.token_urlsafe(9)
    searches[token] = {"kind": kind, "needle": list(needle), "display": display}
    request.session[SEARCHES_SESSION_KEY] = dict(list(searches.items())[-MAX_REMEMBERED_SEARCHES:])
    return token


@region_data_required
@replica_reads
def citizen_search(request: HttpRequest) -> HttpResponse:
    """The search box is POSTed and redirected to a GET carrying a token; filters
    and the page number stay in the URL so that pages can be linked. An export is
    a POST too, of the export form, to the URL that holds the filters."""
    fmt = exports.requested_format(request)
    saved: dict = {}
    if request.method == "POST" and not fmt:
        form = CitizenSearchForm(request.POST, user=request.user)
        if form.is_valid():
            params = {k: form.cleaned_data[k] for k in ("region", "status", "scheme") if form.cleaned_data[k]}
            if form.cleaned_data["q"].strip():
                params["s"] = _remember_search(request, form.cleaned_data["q"])
            elif request.POST.get("s", "") in request.session.get(SEARCHES_SESSION_KEY, {}):
                # A masked search is never put back in the box (its masked text would be searched
                # for); the page sends its token instead, so that changing a filter refines it.
                params["s"] = request.POST["s"]
            return redirect(f"{reverse('citizen_search')}?{urlencode(params)}")
    else:
        saved = request.session.get(SEARCHES_SESSION_KEY, {}).get(request.GET.get("s", ""), {})
        data = {k: request.GET.get(k, "") for k in ("region", "status", "scheme")}
        data["q"] = "" if saved.get("kind") in MASKED_SEARCH_KINDS else saved.get("display", "")
        form = CitizenSearchForm(data, user=request.user)
    query = selectors.CitizenQuery()
    if form.is_valid():
        saved = request.session.get(SEARCHES_SESSION_KEY, {}).get(request.GET.get("s", ""), {})
        query = selectors.CitizenQuery(
            kind=saved.get("kind", ""),
            needle=tuple(saved.get("needle", ())),
            region=form.cleaned_data["region"],
            status=form.cleaned_data["status"],
            scheme=form.cleaned_data["scheme"],
        )
    citizens = selectors.citizen_search(request.user, query)
    if fmt:
        # The URL holds only the search's session token; the audit event records the kind of
        # search, never the name, number or phone searched for.
        filters = {k: request.GET[k] for k in ("region", "status", "scheme") if request.GET.get(k)}
        if query.kind:
            filters["search"] = query.kind
        return exports.export_response(
            request, list_name="citizens", queryset=citizens, columns=CITIZEN_COLUMNS, fmt=fmt, filters=filters
        )
    page = paginate(request, citizens)
    return render(
        request,
        "insurance/citizen_search.html",
        {
            "form": form,
            "page": page,
            "search_kind": query.kind,
            "querystring": querystring_without_page(request),
            "masked_search": saved.get("display", "") if query.kind in MASKED_SEARCH_KINDS else "",
            "search_token": request.GET.get("s", "") if query.kind in MASKED_SEARCH_KINDS else "",
            "clear_search_url": _url_without_search(request),
        },
    )


@citizen_writer_required
def citizen_register(request: HttpRequest) -> HttpResponse:
    form = CitizenRegisterForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            citizen = services.citizen_register(
                actor=Actor.for_request(request),
                id_number=data["id_number"],
                name=data["name"],
                phone=data["phone"],
                region=data["region"],
                scheme=data["scheme"],
            )
        except DomainError as error:
            if error.code == InsuranceErrorCode.CITIZEN_EXISTS:
                services.citizen_register_refused(
                    actor=Actor.for_request(request), id_numbers=[data["id_number"]], region=data["region"]
                )
            add_domain_error(form, error)
        else:
            messages.success(request, _("The citizen has been registered."))
            return redirect("citizen_detail", pk=citizen.pk)
    return render(request, "insurance/citizen_form.html", {"form": form, "title": _("Register a citizen")})


@region_data_required
def citizen_detail(request: HttpRequest, pk: int) -> HttpResponse:
    citizen = _get_citizen_for_user(request.user, pk)
    services.citizen_viewed(actor=Actor.for_request(request), citizen=citizen)
    certificates = selectors.certificate_history(citizen)
    can_write = request.user.can_write_citizens
    cards = [{"card": card, "actions": services.allowed_actions(card) if can_write else []} for card in certificates]
    can_issue = (
        can_write and citizen.status == CitizenStatus.ACTIVE and not any(c.state in LIVE_STATES for c in certificates)
    )
    return render(
        request,
        "insurance/citizen_detail.html",
        {
            "citizen": citizen,
            "cards": cards,
            "can_write": can_write,
            "can_issue": can_issue,
            "audit_events": selectors.citizen_audit_trail(citizen, certificates),
            "action_labels": {k: v["label"] for k, v in CARD_ACTIONS.items()},
        },
    )


@region_data_required
def citizen_edit(request: HttpRequest, pk: int) -> HttpResponse:
    citizen = _get_citizen_for_user(request.user, pk)
    require_citizen_writer(request.user)
    initial = {"name": citizen.name, "phone": citizen.phone, "scheme": citizen.scheme}
    form = CitizenEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.citizen_update(
                actor=Actor.for_request(request),
                citizen=citizen,
                name=data["name"],
                phone=data["phone"],
                scheme=data["scheme"],
            )
        except DomainError as error:
            add_domain_error(form, error)
        else:
            messages.success(request, _("The citizen's details have been saved."))
            return redirect("citizen_detail", pk=citizen.pk)
    return render(
        request, "insurance/citizen_form.html", {"form": form, "citizen": citizen, "title": _("Edit citizen")}
    )


@region_data_required
def citizen_status(request: HttpRequest, pk: int) -> HttpResponse:
    citizen = _get_citizen_for_user(request.user, pk)
    require_citizen_writer(request.user)
    form = CitizenStatusForm(request.POST or None, citizen=citizen)

    def perform(data: dict) -> HttpResponse:
        services.citizen_set_status(
            actor=Actor.for_request(request), citizen=citizen, status=data["status"], reason=data["reason"]
        )
        messages.success(request, _("The citizen's status has been changed."))
        return redirect("citizen_detail", pk=citizen.pk)

    new_status = form.cleaned_data.get("status") if form.is_bound and form.is_valid() else None
    return two_step(
        request,
        form=form,
        template="insurance/citizen_status.html",
        perform=perform,
        context={
            "citizen": citizen,
            "new_status_label": dict(CitizenStatus.choices).get(new_status, ""),
            "revokes_cards": new_status not in (None, CitizenStatus.ACTIVE),
            "live_cards": citizen.certificates.filter(state__in=LIVE_STATES),
        },
    )


@region_data_required
def certificate_issue(request: HttpRequest, pk: int) -> HttpResponse:
    citizen = _get_citizen_for_user(request.user, pk)
    require_citizen_writer(request.user)
    form = ReasonForm(request.POST or None)

    def perform(data: dict) -> HttpResponse:
        card = services.certificate_issue(actor=Actor.for_request(request), citizen=citizen, reason=data["reason"])
        messages.success(request, _("E-card %(number)s has been issued.") % {"number": card.number})
        return redirect("citizen_detail", pk=citizen.pk)

    return two_step(
        request,
        form=form,
        template="insurance/certificate_action.html",
        perform=perform,
        context={
            "citizen": citizen,
            "card": None,
            "action": "issue",
            "label": CARD_ACTIONS["issue"]["label"],
            "effect": CARD_ACTIONS["issue"]["effect"],
        },
    )


@region_data_required
def certificate_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    card = _get_certificate_for_user(request.user, pk)
    if action not in CARD_ACTIONS or action == "issue":
        raise Http404
    require_citizen_writer(request.user)
    if action not in services.allowed_actions(card):
        messages.error(
            request, _("This e-card is %(state)s: it cannot be changed this way.") % {"state": card.get_state_display()}
        )
        return redirect("citizen_detail", pk=card.citizen_id)
    form = ReasonForm(request.POST or None)
    spec = CARD_ACTIONS[action]

    def perform(data: dict) -> HttpResponse:
        result = spec["service"](actor=Actor.for_request(request), certificate=card, reason=data["reason"])
        if action == "reissue":
            messages.success(
                request, _("E-card %(old)s has been replaced by %(new)s.") % {"old": card.number, "new": result.number}
            )
        else:
            messages.success(
                request,
                _("E-card %(number)s is now %(state)s.")
                % {"number": result.number, "state": result.get_state_display()},
            )
        return redirect("citizen_detail", pk=card.citizen_id)

    return two_step(
        request,
        form=form,
        template="insurance/certificate_action.html",
        perform=perform,
        context={
            "citizen": card.citizen,
            "card": card,
            "action": action,
            "label": spec["label"],
            "effect": spec["effect"],
        },
    )
