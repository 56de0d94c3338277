"""Screens of the regions' reimbursement policies: the versions of each (region,
scheme, year) within the user's regions (another region's answers 404), and
publishing a new version, restated for confirmation before it is written.
National operators and the region's administrators publish; others get 403.
Writes go through insurance.catalogue, each audited.
"""

from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from insurance import catalogue
from insurance.forms_catalogue import PolicyChooseForm, PolicyVersionForm
from insurance.models import ReimbursementPolicy, Scheme, ServiceCategory
from insurance.views_catalogue import may_edit_region_data
from portal import exports
from portal.actors import Actor
from portal.models import Region
from portal.replica import replica_reads
from portal.scope import regions_visible_to, restrict_to_user_regions
from portal.screens import paginate, querystring_without_page, region_data_required, two_step

POLICY_COLUMNS = [
    exports.RegionColumn(gettext_lazy("Region"), lambda g: g["region_id"]),
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


def _get_region_for_user(user, code: str) -> Region:
    try:
        return regions_visible_to(user).get(code=code)
    except Region.DoesNotExist as exc:
        raise Http404 from exc


@region_data_required
@replica_reads
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


@region_data_required
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
    kinds = {
        "effective_from": "date",
        "deductible_fen": "yuan",
        "ratio": "percent",
        "annual_cap_fen": "yuan",
        "personal_account_allowed": "bool",
        "premium_fen": "yuan",  # resident schemes only: the form has no such field otherwise
    }
    rows = [
        (name, form.fields[name].label, getattr(previous, name) if previous else None, values[name], kind)
        for name, kind in kinds.items()
        if name in form.fields
    ]
    old_shares = catalogue.normalise_eligible_shares(previous.eligible_shares) if previous else {}
    for key in ServiceCategory.values:
        old = Decimal(old_shares[key]) if previous else None
        rows.append((f"share_{key}", form.fields[f"share_{key}"].label, old, values["eligible_shares"][key], "percent"))
    return [
        {"name": name, "label": label, "old": old, "new": new, "kind": kind, "changed": previous is None or old != new}
        for name, label, old, new, kind in rows
    ]


@region_data_required
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
