"""Screens of the national service catalogue and the regions' facilities, and
their CSV imports (the policies' screens are in views_policies).

Who may do what: every staff member who sees the regions' data (not the
security officer, whose duty is keys) reads the catalogue; national
operators edit it. Facilities and policies are read within the user's regions
(another region's answers 404) and edited by national operators and the
region's administrators (clerks and auditors get 403). Writes go through
insurance.catalogue, each audited.
"""

import secrets
from collections.abc import Callable
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from insurance import catalogue, catalogue_import
from insurance.forms_catalogue import (
    FacilityFilterForm,
    FacilityForm,
    ImportForm,
    ServiceFilterForm,
    ServiceForm,
)
from insurance.models import Facility, ServiceItem
from portal import exports
from portal.actors import Actor
from portal.errors import DomainError
from portal.models import Role
from portal.replica import replica_reads
from portal.scope import regions_visible_to, restrict_to_user_regions, visible_region_codes
from portal.screens import add_domain_error, paginate, querystring_without_page, region_data_required

IMPORT_REPORTS_SESSION_KEY = "catalogue_import_reports"
MAX_REPORTED_ERRORS = 2000
MAX_REMEMBERED_REPORTS = 5


def may_edit_catalogue(user) -> bool:
    return getattr(user, "role", None) == Role.NATIONAL_OPERATOR


def may_edit_region_data(user) -> bool:
    """Facilities and policies of the regions in the user's scope."""
    return getattr(user, "role", None) in {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN}


def _require(check: Callable[[object], bool]) -> Callable:
    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not check(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


catalogue_editor_required = _require(may_edit_catalogue)


def _get_service(pk: int) -> ServiceItem:
    try:
        return ServiceItem.objects.get(pk=pk)
    except ServiceItem.DoesNotExist as exc:
        raise Http404 from exc


def _get_facility_for_user(user, pk: int) -> Facility:
    try:
        return restrict_to_user_regions(Facility.objects.select_related("region"), user).get(pk=pk)
    except Facility.DoesNotExist as exc:
        raise Http404 from exc


def _remember_report(request: HttpRequest, kind: str, result: catalogue_import.ImportResult) -> str | None:
    """Keep the refused rows in the session for the downloadable report."""
    if not result.errors:
        return None
    reports = request.session.get(IMPORT_REPORTS_SESSION_KEY, {})
    token = secrets.token_urlsafe(9)
    reports[token] = {
        "kind": kind,
        "errors": [[e.row, e.column, e.reason] for e in result.errors[:MAX_REPORTED_ERRORS]],
    }
    request.session[IMPORT_REPORTS_SESSION_KEY] = dict(list(reports.items())[-MAX_REMEMBERED_REPORTS:])
    return token


def _run_import(request: HttpRequest, *, kind: str, importer: Callable, template: str, context: dict) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    result = token = None
    if request.method == "POST" and form.is_valid():
        try:
            result = importer(catalogue_import.text_lines(form.cleaned_data["file"].file))
        except catalogue_import.ImportFileError as error:
            form.add_error("file", str(error))
        else:
            token = _remember_report(request, kind, result)
            if result.errors:
                messages.warning(
                    request,
                    _("%(good)s rows imported, %(bad)s rows refused.")
                    % {"good": result.imported, "bad": len(result.errors)},
                )
            else:
                messages.success(request, _("%(good)s rows imported.") % {"good": result.imported})
    return render(
        request,
        template,
        {
            **context,
            "form": form,
            "result": result,
            "report_token": token,
            "shown_errors": result.errors[:100] if result else [],
        },
    )


def _coded_list(
    request: HttpRequest,
    form: ServiceFilterForm | FacilityFilterForm,
    queryset: QuerySet,
    *,
    lookups: dict[str, str],
    list_name: str,
    columns: list[exports.Column],
    template: str,
    can_edit: bool,
) -> HttpResponse:
    """The list screens of coded entries (services, facilities): the search matches the
    code and both names, `lookups` maps each other filter field to its exact lookup; an
    export request gets the whole filtered list, otherwise one page."""
    sort = "code"
    if form.is_valid():
        data = form.cleaned_data
        if q := data["q"].strip():
            queryset = queryset.filter(Q(code__icontains=q) | Q(name_zh__icontains=q) | Q(name_en__icontains=q))
        for field, lookup in lookups.items():
            if data[field]:
                queryset = queryset.filter(**{lookup: data[field]})
        if data["active"]:
            queryset = queryset.filter(active=data["active"] == "yes")
        sort = data["sort"] or "code"
    queryset = queryset.order_by(form.SORTS[sort], "code")
    if fmt := exports.requested_format(request):
        return exports.export_response(request, list_name=list_name, queryset=queryset, columns=columns, fmt=fmt)
    return render(
        request,
        template,
        {
            "form": form,
            "page": paginate(request, queryset),
            "querystring": querystring_without_page(request),
            "can_edit": can_edit,
        },
    )


def _changes(obj: object, data: dict) -> dict:
    """The edit form's fields whose value differs from the object's."""
    return {k: v for k, v in data.items() if getattr(obj, k) != v}


def _entry_form(
    request: HttpRequest,
    form: forms.Form,
    *,
    write: Callable[[dict], object],
    done: Callable[[object], str],
    list_url: str,
    title: str,
    **context: object,
) -> HttpResponse:
    """The add and edit screens: a valid POST calls `write` (a catalogue service) with
    the cleaned data; a refusal becomes a form error, success the message `done(result)`
    and a redirect to the list."""
    if request.method == "POST" and form.is_valid():
        try:
            result = write(form.cleaned_data)
        except DomainError as error:
            add_domain_error(form, error)
        else:
            messages.success(request, done(result))
            return redirect(list_url)
    return render(
        request,
        "insurance/entry_form.html",
        {**context, "form": form, "title": title, "cancel_url": reverse(list_url)},
    )


def _active_toggle(
    request: HttpRequest, obj: ServiceItem | Facility, *, set_active: Callable[[bool], object], list_url: str, done: str
) -> HttpResponse:
    """Deactivate or reactivate after a confirmation (POST only); `done` is the message,
    said after the change (`obj.active` is the state before it)."""
    if request.method == "POST" and request.POST.get("confirmed") == "yes":
        set_active(not obj.active)
        messages.success(request, done)
        return redirect(list_url)
    return render(
        request,
        "insurance/active_toggle.html",
        {"object": obj, "cancel_url": reverse(list_url), "confirm_field": "confirmed"},
    )


@region_data_required
def import_error_report(request: HttpRequest, token: str) -> HttpResponse:
    report = request.session.get(IMPORT_REPORTS_SESSION_KEY, {}).get(token)
    if report is None:
        raise Http404
    errors = [catalogue_import.RowError(*e) for e in report["errors"]]
    response = HttpResponse(catalogue_import.error_report_csv(errors), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{report["kind"]}-import-errors.csv"'
    return response


# --- Export columns ----------------------------------------------------------------

SERVICE_COLUMNS = [
    exports.Column(gettext_lazy("Code"), lambda i: i.code),
    exports.Column(gettext_lazy("Chinese name"), lambda i: i.name_zh),
    exports.Column(gettext_lazy("English name"), lambda i: i.name_en),
    exports.Column(gettext_lazy("Category"), lambda i: i.get_category_display()),
    exports.Column(gettext_lazy("Unit"), lambda i: i.unit),
    exports.Column(gettext_lazy("Maximum unit price (yuan)"), lambda i: exports.yuan(i.max_unit_price_fen)),
    exports.Column(gettext_lazy("State"), lambda i: _("Active") if i.active else _("Inactive")),
]
FACILITY_COLUMNS = [
    exports.Column(gettext_lazy("Code"), lambda f: f.code),
    exports.Column(gettext_lazy("Chinese name"), lambda f: f.name_zh),
    exports.Column(gettext_lazy("English name"), lambda f: f.name_en),
    exports.Column(gettext_lazy("Kind"), lambda f: f.get_kind_display()),
    exports.RegionColumn(gettext_lazy("Region"), lambda f: f.region_id),
    exports.Column(gettext_lazy("State"), lambda f: _("Active") if f.active else _("Inactive")),
]
# --- Service catalogue ------------------------------------------------------------


@region_data_required
@replica_reads
def service_list(request: HttpRequest) -> HttpResponse:
    return _coded_list(
        request,
        ServiceFilterForm(request.GET or None),
        ServiceItem.objects.all(),
        lookups={"category": "category"},
        list_name="services",
        columns=SERVICE_COLUMNS,
        template="insurance/catalogue_list.html",
        can_edit=may_edit_catalogue(request.user),
    )


@catalogue_editor_required
def service_create(request: HttpRequest) -> HttpResponse:
    actor = Actor.for_request(request)
    return _entry_form(
        request,
        ServiceForm(request.POST or None),
        write=lambda data: catalogue.service_create(actor=actor, **data),
        done=lambda item: _("Service %(code)s has been added.") % {"code": item.code},
        list_url="catalogue_list",
        title=_("Add a service"),
    )


@catalogue_editor_required
def service_edit(request: HttpRequest, pk: int) -> HttpResponse:
    item = _get_service(pk)
    initial = {k: getattr(item, k) for k in ("name_zh", "name_en", "category", "unit", "max_unit_price_fen")}
    actor = Actor.for_request(request)
    return _entry_form(
        request,
        ServiceForm(request.POST or None, initial=initial, editing=True),
        write=lambda data: catalogue.service_update(actor=actor, item=item, **_changes(item, data)),
        done=lambda _result: _("Service %(code)s has been saved.") % {"code": item.code},
        list_url="catalogue_list",
        title=_("Edit service %(code)s") % {"code": item.code},
        item=item,
    )


@catalogue_editor_required
def service_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    item = _get_service(pk)
    return _active_toggle(
        request,
        item,
        set_active=lambda active: catalogue.service_set_active(
            actor=Actor.for_request(request), item=item, active=active
        ),
        list_url="catalogue_list",
        done=(
            _("Service %(code)s is active again.") if not item.active else _("Service %(code)s has been deactivated.")
        )
        % {"code": item.code},
    )


@catalogue_editor_required
def service_import(request: HttpRequest) -> HttpResponse:
    actor = Actor.for_request(request)
    return _run_import(
        request,
        kind="services",
        template="insurance/import_rows.html",
        importer=lambda lines: catalogue_import.import_services(actor=actor, lines=lines),
        context={
            "title": _("Import services"),
            "columns": catalogue_import.SERVICE_COLUMNS,
            "back_url": reverse("catalogue_list"),
        },
    )


# --- Facilities ----------------------------------------------------------------------


@region_data_required
@replica_reads
def facility_list(request: HttpRequest) -> HttpResponse:
    return _coded_list(
        request,
        FacilityFilterForm(request.GET or None, user=request.user),
        restrict_to_user_regions(Facility.objects.select_related("region"), request.user),
        lookups={"region": "region_id", "kind": "kind"},
        list_name="facilities",
        columns=FACILITY_COLUMNS,
        template="insurance/facility_list.html",
        can_edit=may_edit_region_data(request.user),
    )


@_require(may_edit_region_data)
def facility_create(request: HttpRequest) -> HttpResponse:
    actor = Actor.for_request(request)
    return _entry_form(
        request,
        FacilityForm(request.POST or None, regions=regions_visible_to(request.user)),
        write=lambda data: catalogue.facility_create(actor=actor, **data),
        done=lambda facility: _("Facility %(code)s has been added.") % {"code": facility.code},
        list_url="facility_list",
        title=_("Add a facility"),
    )


def _get_facility_to_edit(request: HttpRequest, pk: int) -> Facility:
    facility = _get_facility_for_user(request.user, pk)  # 404 before 403: outsiders learn nothing
    if not may_edit_region_data(request.user):
        raise PermissionDenied
    return facility


@region_data_required
def facility_edit(request: HttpRequest, pk: int) -> HttpResponse:
    facility = _get_facility_to_edit(request, pk)
    initial = {k: getattr(facility, k) for k in ("name_zh", "name_en", "kind")}
    actor = Actor.for_request(request)
    return _entry_form(
        request,
        FacilityForm(request.POST or None, initial=initial, editing=True),
        write=lambda data: catalogue.facility_update(actor=actor, facility=facility, **_changes(facility, data)),
        done=lambda _result: _("Facility %(code)s has been saved.") % {"code": facility.code},
        list_url="facility_list",
        title=_("Edit facility %(code)s") % {"code": facility.code},
        facility=facility,
    )


@region_data_required
def facility_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    facility = _get_facility_to_edit(request, pk)
    return _active_toggle(
        request,
        facility,
        set_active=lambda active: catalogue.facility_set_active(
            actor=Actor.for_request(request), facility=facility, active=active
        ),
        list_url="facility_list",
        done=(
            _("Facility %(code)s is active again.")
            if not facility.active
            else _("Facility %(code)s has been deactivated.")
        )
        % {"code": facility.code},
    )


@_require(may_edit_region_data)
def facility_import(request: HttpRequest) -> HttpResponse:
    actor = Actor.for_request(request)
    codes = visible_region_codes(request.user)
    return _run_import(
        request,
        kind="facilities",
        template="insurance/import_rows.html",
        importer=lambda lines: catalogue_import.import_facilities(actor=actor, lines=lines, region_codes=codes),
        context={
            "title": _("Import facilities"),
            "columns": catalogue_import.FACILITY_COLUMNS,
            "back_url": reverse("facility_list"),
        },
    )
