"""Screens of the national service catalogue, the regions' facilities and
reimbursement policies, and their CSV imports.

Who may do what: every signed-in staff member reads the catalogue; national
operators edit it. Facilities and policies are read within the user's regions
(another region's answers 404) and edited by national operators and the
region's administrators (clerks and auditors get 403). Writes go through
insurance.catalogue, each audited.
"""

import secrets
from collections.abc import Callable
from decimal import Decimal
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from insurance import catalogue, catalogue_import
from insurance.forms_catalogue import (
    FacilityFilterForm,
    FacilityForm,
    ImportForm,
    PolicyChooseForm,
    PolicyVersionForm,
    ServiceFilterForm,
    ServiceForm,
)
from insurance.models import Facility, ReimbursementPolicy, Scheme, ServiceCategory, ServiceItem
from portal import exports
from portal.actors import Actor
from portal.errors import DomainError
from portal.models import Region, Role
from portal.scope import regions_visible_to, restrict_to_user_regions, visible_region_codes
from portal.screens import add_domain_error, paginate, querystring_without_page, two_step

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


def _get_region_for_user(user, code: str) -> Region:
    try:
        return regions_visible_to(user).get(code=code)
    except Region.DoesNotExist as exc:
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


@login_required
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
    exports.Column(gettext_lazy("Region"), lambda f: f.region_id),
    exports.Column(gettext_lazy("State"), lambda f: _("Active") if f.active else _("Inactive")),
]
POLICY_COLUMNS = [
    exports.Column(gettext_lazy("Region"), lambda g: g["region_id"]),
    exports.Column(gettext_lazy("Scheme"), lambda g: dict(Scheme.choices).get(g["scheme"], g["scheme"])),
    exports.Column(gettext_lazy("Year"), lambda g: g["year"]),
    exports.Column(gettext_lazy("Versions"), lambda g: g["versions"]),
    exports.Column(gettext_lazy("Latest version"), lambda g: g["latest"]),
]

POLICY_VERSION_COLUMNS = [
    exports.Column(gettext_lazy("Version"), lambda p: p.version),
    exports.Column(gettext_lazy("Effective from"), lambda p: p.effective_from),
    exports.Column(gettext_lazy("Deductible (yuan)"), lambda p: exports.yuan(p.deductible_fen)),
    exports.Column(gettext_lazy("Reimbursement ratio"), lambda p: p.ratio),
    exports.Column(gettext_lazy("Annual fund cap (yuan)"), lambda p: exports.yuan(p.annual_cap_fen)),
    exports.Column(
        gettext_lazy("Personal account"), lambda p: _("Allowed") if p.personal_account_allowed else _("Not allowed")
    ),
    exports.Column(gettext_lazy("Premium (yuan)"), lambda p: exports.yuan(p.premium_fen)),
    *[
        exports.Column(
            format_lazy("{}: {}", gettext_lazy("Eligible share"), label),
            lambda p, key=key: Decimal(catalogue.normalise_eligible_shares(p.eligible_shares)[key]),
        )
        for key, label in ServiceCategory.choices
    ],
    exports.Column(gettext_lazy("Published by"), lambda p: p.created_by),
    exports.Column(gettext_lazy("Published at"), lambda p: p.created_at),
]


# --- Service catalogue ------------------------------------------------------------


@login_required
def service_list(request: HttpRequest) -> HttpResponse:
    form = ServiceFilterForm(request.GET or None)
    queryset = ServiceItem.objects.all()
    sort = "code"
    if form.is_valid():
        data = form.cleaned_data
        if data["q"].strip():
            q = data["q"].strip()
            queryset = queryset.filter(Q(code__icontains=q) | Q(name_zh__icontains=q) | Q(name_en__icontains=q))
        if data["category"]:
            queryset = queryset.filter(category=data["category"])
        if data["active"]:
            queryset = queryset.filter(active=data["active"] == "yes")
        sort = data["sort"] or "code"
    queryset = queryset.order_by(ServiceFilterForm.SORTS[sort], "code")
    if fmt := exports.requested_format(request):
        return exports.export_response(
            request, list_name="services", queryset=queryset, columns=SERVICE_COLUMNS, fmt=fmt
        )
    return render(
        request,
        "insurance/catalogue_list.html",
        {
            "form": form,
            "page": paginate(request, queryset),
            "querystring": querystring_without_page(request),
            "can_edit": may_edit_catalogue(request.user),
        },
    )


@catalogue_editor_required
def service_create(request: HttpRequest) -> HttpResponse:
    form = ServiceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            item = catalogue.service_create(actor=Actor.for_request(request), **form.cleaned_data)
        except DomainError as error:
            add_domain_error(form, error)
        else:
            messages.success(request, _("Service %(code)s has been added.") % {"code": item.code})
            return redirect("catalogue_list")
    return render(
        request,
        "insurance/entry_form.html",
        {"form": form, "title": _("Add a service"), "cancel_url": reverse("catalogue_list")},
    )


@catalogue_editor_required
def service_edit(request: HttpRequest, pk: int) -> HttpResponse:
    item = _get_service(pk)
    initial = {k: getattr(item, k) for k in ("name_zh", "name_en", "category", "unit", "max_unit_price_fen")}
    form = ServiceForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        changes = {k: v for k, v in form.cleaned_data.items() if getattr(item, k) != v}
        try:
            catalogue.service_update(actor=Actor.for_request(request), item=item, **changes)
        except DomainError as error:
            add_domain_error(form, error)
        else:
            messages.success(request, _("Service %(code)s has been saved.") % {"code": item.code})
            return redirect("catalogue_list")
    return render(
        request,
        "insurance/entry_form.html",
        {
            "form": form,
            "item": item,
            "title": _("Edit service %(code)s") % {"code": item.code},
            "cancel_url": reverse("catalogue_list"),
        },
    )


@catalogue_editor_required
def service_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    """Deactivate or reactivate, after a confirmation (POST only)."""
    item = _get_service(pk)
    if request.method == "POST" and request.POST.get("confirmed") == "yes":
        catalogue.service_set_active(actor=Actor.for_request(request), item=item, active=not item.active)
        messages.success(
            request,
            (_("Service %(code)s is active again.") if not item.active else _("Service %(code)s has been deactivated."))
            % {"code": item.code},
        )
        return redirect("catalogue_list")
    return render(
        request,
        "insurance/active_toggle.html",
        {
            "object": item,
            "cancel_url": reverse("catalogue_list"),
            "confirm_field": "confirmed",
        },
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


@login_required
def facility_list(request: HttpRequest) -> HttpResponse:
    form = FacilityFilterForm(request.GET or None, user=request.user)
    queryset = restrict_to_user_regions(Facility.objects.select_related("region"), request.user)
    sort = "code"
    if form.is_valid():
        data = form.cleaned_data
        if data["q"].strip():
            q = data["q"].strip()
            queryset = queryset.filter(Q(code__icontains=q) | Q(name_zh__icontains=q) | Q(name_en__icontains=q))
        if data["region"]:
            queryset = queryset.filter(region_id=data["region"])
        if data["kind"]:
            queryset = queryset.filter(kind=data["kind"])
        if data["active"]:
            queryset = queryset.filter(active=data["active"] == "yes")
        sort = data["sort"] or "code"
    queryset = queryset.order_by(FacilityFilterForm.SORTS[sort], "code")
    if fmt := exports.requested_format(request):
        return exports.export_response(
            request, list_name="facilities", queryset=queryset, columns=FACILITY_COLUMNS, fmt=fmt
        )
    return render(
        request,
        "insurance/facility_list.html",
        {
            "form": form,
            "page": paginate(request, queryset),
            "querystring": querystring_without_page(request),
            "can_edit": may_edit_region_data(request.user),
        },
    )


@_require(may_edit_region_data)
def facility_create(request: HttpRequest) -> HttpResponse:
    form = FacilityForm(request.POST or None, regions=regions_visible_to(request.user))
    if request.method == "POST" and form.is_valid():
        try:
            facility = catalogue.facility_create(actor=Actor.for_request(request), **form.cleaned_data)
        except DomainError as error:
            add_domain_error(form, error)
        else:
            messages.success(request, _("Facility %(code)s has been added.") % {"code": facility.code})
            return redirect("facility_list")
    return render(
        request,
        "insurance/entry_form.html",
        {"form": form, "title": _("Add a facility"), "cancel_url": reverse("facility_list")},
    )


@login_required
def facility_edit(request: HttpRequest, pk: int) -> HttpResponse:
    facility = _get_facility_for_user(request.user, pk)  # 404 before 403: outsiders learn nothing
    if not may_edit_region_data(request.user):
        raise PermissionDenied
    initial = {k: getattr(facility, k) for k in ("name_zh", "name_en", "kind")}
    form = FacilityForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        changes = {k: v for k, v in form.cleaned_data.items() if getattr(facility, k) != v}
        try:
            catalogue.facility_update(actor=Actor.for_request(request), facility=facility, **changes)
        except DomainError as error:
            add_domain_error(form, error)
        else:
            messages.success(request, _("Facility %(code)s has been saved.") % {"code": facility.code})
            return redirect("facility_list")
    return render(
        request,
        "insurance/entry_form.html",
        {
            "form": form,
            "facility": facility,
            "title": _("Edit facility %(code)s") % {"code": facility.code},
            "cancel_url": reverse("facility_list"),
        },
    )


@login_required
def facility_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    facility = _get_facility_for_user(request.user, pk)
    if not may_edit_region_data(request.user):
        raise PermissionDenied
    if request.method == "POST" and request.POST.get("confirmed") == "yes":
        catalogue.facility_set_active(actor=Actor.for_request(request), facility=facility, active=not facility.active)
        messages.success(
            request,
            (
                _("Facility %(code)s is active again.")
                if not facility.active
                else _("Facility %(code)s has been deactivated.")
            )
            % {"code": facility.code},
        )
        return redirect("facility_list")
    return render(
        request,
        "insurance/active_toggle.html",
        {
            "object": facility,
            "cancel_url": reverse("facility_list"),
            "confirm_field": "confirmed",
        },
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


# --- Reimbursement policies ------------------------------------------------------------


@login_required
def policy_index(request: HttpRequest) -> HttpResponse:
    """Every (region, scheme, year) with policies in the user's regions, and a form to open one."""
    form = PolicyChooseForm(request.GET or None, user=request.user, initial={"year": catalogue.shanghai_today().year})
    fmt = exports.requested_format(request)
    if not fmt and form.is_bound and form.is_valid():
        data = form.cleaned_data
        return redirect("policy_versions", region=data["region"], scheme=data["scheme"], year=data["year"])
    groups = (
        restrict_to_user_regions(ReimbursementPolicy.objects.all(), request.user)
        .values("region_id", "region__name_zh", "region__name_en", "scheme", "year")
        .annotate(versions=Count("id"), latest=Max("version"))
        .order_by("region_id", "-year", "scheme")
    )
    if fmt:
        return exports.export_response(
            request, list_name="policies", queryset=groups, columns=POLICY_COLUMNS, fmt=fmt, filters={}
        )
    return render(
        request,
        "insurance/policy_index.html",
        {
            "form": form,
            "page": paginate(request, groups),
            "querystring": querystring_without_page(request),
            "scheme_labels": dict(Scheme.choices),
        },
    )


def _policy_scope(request: HttpRequest, region: str, scheme: str, year: int) -> Region:
    region_obj = _get_region_for_user(request.user, region)
    if scheme not in Scheme.values or not 2000 <= year <= 2099:
        raise Http404
    return region_obj


@login_required
def policy_versions(request: HttpRequest, region: str, scheme: str, year: int) -> HttpResponse:
    region_obj = _policy_scope(request, region, scheme, year)
    if fmt := exports.requested_format(request):
        return exports.export_response(
            request,
            list_name=f"policy-{region}-{scheme}-{year}",
            fmt=fmt,
            columns=POLICY_VERSION_COLUMNS,
            queryset=catalogue.policy_versions(region, scheme, year).order_by("-version"),
            filters={"region": region, "scheme": scheme, "year": str(year)},
        )
    versions = list(catalogue.policy_versions(region, scheme, year))
    in_force = catalogue.policy_in_force(region, scheme, year)
    return render(
        request,
        "insurance/policy_versions.html",
        {
            "region": region_obj,
            "scheme": scheme,
            "scheme_label": dict(Scheme.choices)[scheme],
            "year": year,
            "versions": versions[::-1],
            "in_force_id": in_force.pk if in_force else None,
            "categories": ServiceCategory.choices,
            "can_edit": may_edit_region_data(request.user),
        },
    )


def _prefill_source(region: str, scheme: str, year: int) -> ReimbursementPolicy | None:
    """The latest version of the year, else the latest of the year before."""
    latest = catalogue.policy_versions(region, scheme, year).last()
    return latest or catalogue.policy_versions(region, scheme, year - 1).last()


def _policy_initial(source: ReimbursementPolicy | None, year: int) -> dict:
    today = catalogue.shanghai_today()
    start = today if year <= today.year else max(today, today.replace(year=year, month=1, day=1))
    if source is None:
        shares = catalogue.normalise_eligible_shares(None)
        return {"effective_from": start, **{f"share_{k}": Decimal(v) for k, v in shares.items()}}
    shares = catalogue.normalise_eligible_shares(source.eligible_shares)
    return {
        "effective_from": max(start, source.effective_from) if source.year == year else start,
        "deductible_fen": source.deductible_fen,
        "ratio": source.ratio,
        "annual_cap_fen": source.annual_cap_fen,
        "personal_account_allowed": source.personal_account_allowed,
        "premium_fen": source.premium_fen,
        **{f"share_{k}": Decimal(v) for k, v in shares.items()},
    }


def _policy_changes(form: PolicyVersionForm, previous: ReimbursementPolicy | None) -> list[dict]:
    """What the new version changes, field by field, for the confirmation page."""
    values = form.policy_values()
    rows = [
        (
            "effective_from",
            form.fields["effective_from"].label,
            previous and previous.effective_from,
            values["effective_from"],
            "date",
        ),
        (
            "deductible_fen",
            form.fields["deductible_fen"].label,
            previous and previous.deductible_fen,
            values["deductible_fen"],
            "yuan",
        ),
        ("ratio", form.fields["ratio"].label, previous and previous.ratio, values["ratio"], "percent"),
        (
            "annual_cap_fen",
            form.fields["annual_cap_fen"].label,
            previous and previous.annual_cap_fen,
            values["annual_cap_fen"],
            "yuan",
        ),
        (
            "personal_account_allowed",
            form.fields["personal_account_allowed"].label,
            previous.personal_account_allowed if previous else None,
            values["personal_account_allowed"],
            "bool",
        ),
    ]
    if "premium_fen" in form.fields:
        rows.append(
            (
                "premium_fen",
                form.fields["premium_fen"].label,
                previous and previous.premium_fen,
                values["premium_fen"],
                "yuan",
            )
        )
    old_shares = catalogue.normalise_eligible_shares(previous.eligible_shares) if previous else {}
    for key in ServiceCategory.values:
        old = Decimal(old_shares[key]) if previous else None
        rows.append((f"share_{key}", form.fields[f"share_{key}"].label, old, values["eligible_shares"][key], "percent"))
    return [
        {"name": name, "label": label, "old": old, "new": new, "kind": kind, "changed": previous is None or old != new}
        for name, label, old, new, kind in rows
    ]


@login_required
def policy_new_version(request: HttpRequest, region: str, scheme: str, year: int) -> HttpResponse:
    region_obj = _policy_scope(request, region, scheme, year)
    if not may_edit_region_data(request.user):
        raise PermissionDenied
    previous = catalogue.policy_versions(region, scheme, year).last()
    form = PolicyVersionForm(
        request.POST or None, scheme=scheme, initial=_policy_initial(_prefill_source(region, scheme, year), year)
    )

    def perform(data: dict) -> HttpResponse:
        policy = catalogue.policy_create_version(
            actor=Actor.for_request(request), region=region_obj, scheme=scheme, year=year, **form.policy_values()
        )
        messages.success(
            request, _("Version %(version)s of the policy has been published.") % {"version": policy.version}
        )
        return redirect("policy_versions", region=region, scheme=scheme, year=year)

    changes = _policy_changes(form, previous) if form.is_bound and form.is_valid() else []
    return two_step(
        request,
        form=form,
        template="insurance/policy_form.html",
        perform=perform,
        context={
            "region": region_obj,
            "scheme": scheme,
            "scheme_label": dict(Scheme.choices)[scheme],
            "year": year,
            "previous": previous,
            "changes": changes,
            "any_change": any(c["changed"] for c in changes),
            "cancel_url": reverse("policy_versions", kwargs={"region": region, "scheme": scheme, "year": year}),
        },
    )
