"""The audit log viewer, the auditors' duty (separation of duties, DESIGN §2):
auditors see the events of their regions and export them; an auditor of every
region (a national auditor) also sees the national events, the system
administrator's and the security officer's (portal/selectors_audit.py decides).
A national operator reads it, every event, only where the
deployment sets ECARD_ALLOW_OPERATOR_AUDITOR and the account was made an
auditor too (`User.also_auditor`); otherwise national operators, security
officers, region administrators and clerks are refused (403). An event outside
the user's scope answers 404, like a missing one. Read-only: the log is append-only."""

import json
from collections.abc import Callable
from functools import wraps

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from portal import exports
from portal.audit_labels import action_label
from portal.models import AuditEvent
from portal.scope import regions_visible_to
from portal.screens import paginate, querystring_without_page
from portal.selectors_audit import AuditQuery, audit_events_visible_to, audit_search, reads_every_audit_event

OBJECT_TYPES = [
    ("citizen", gettext_lazy("Citizen")),
    ("certificate", gettext_lazy("E-card")),
    ("linkage", gettext_lazy("Wallet linkage")),
    ("family_binding", gettext_lazy("Family binding")),
    ("settlement", gettext_lazy("Settlement")),
    ("premium", gettext_lazy("Premium payment")),
    ("personal_account", gettext_lazy("Personal account")),
    ("risk_flag", gettext_lazy("Risk flag")),
    ("facility", gettext_lazy("Facility")),
    ("reimbursement_policy", gettext_lazy("Reimbursement policy")),
    ("service_item", gettext_lazy("Service")),
    ("user", gettext_lazy("Staff account")),
    ("partner", gettext_lazy("Partner")),
    ("partner_key", gettext_lazy("Partner key")),
    ("portal_key", gettext_lazy("Portal signing key")),
    ("outbox_event", gettext_lazy("Partner event")),
    ("export", gettext_lazy("Export")),
]


def audit_reader_required(view: Callable) -> Callable:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not getattr(request.user, "reads_audit_log", False):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


class AuditFilterForm(forms.Form):
    date_from = forms.DateField(
        label=gettext_lazy("From (date)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=gettext_lazy("To (date)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    action = forms.CharField(
        label=gettext_lazy("Action"),
        max_length=64,
        required=False,
        help_text=gettext_lazy("e.g. certificate.revoke, or certificate. for every e-card action"),
    )
    actor = forms.CharField(
        label=gettext_lazy("Actor"), max_length=150, required=False, help_text=gettext_lazy("Username or partner code")
    )
    object_type = forms.ChoiceField(label=gettext_lazy("Object type"), required=False)
    object_id = forms.CharField(label=gettext_lazy("Object ID"), max_length=64, required=False)
    region = forms.ChoiceField(label=gettext_lazy("Region"), required=False)

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["object_type"].choices = [("", _("Any")), *OBJECT_TYPES]
        self.fields["region"].choices = [("", _("All regions"))] + [
            (r.code, f"{r.code} {r.display_name}") for r in regions_visible_to(user)
        ]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", _("The end date is before the start date."))
        return data

    def query(self) -> AuditQuery:
        data = self.cleaned_data
        return AuditQuery(
            date_from=data["date_from"],
            date_to=data["date_to"],
            action=data["action"].strip(),
            actor=data["actor"].strip(),
            object_type=data["object_type"],
            object_id=data["object_id"].strip(),
            region=data["region"],
        )


def _actor_display(event: AuditEvent) -> str:
    return f"{event.actor_type}:{event.actor_label}" if event.actor_label else event.actor_type


AUDIT_COLUMNS = [
    exports.Column(gettext_lazy("Sequence"), lambda e: e.seq),
    exports.Column(gettext_lazy("Time"), lambda e: e.created_at),
    exports.Column(gettext_lazy("Actor type"), lambda e: e.actor_type),
    exports.Column(gettext_lazy("Actor"), lambda e: e.actor_label),
    exports.Column(gettext_lazy("Action"), lambda e: e.action),
    exports.Column(gettext_lazy("What happened"), lambda e: action_label(e.action)),
    exports.Column(gettext_lazy("Object type"), lambda e: e.object_type),
    exports.Column(gettext_lazy("Object ID"), lambda e: e.object_id),
    exports.Column(gettext_lazy("Region"), lambda e: e.region_code),
    exports.Column(gettext_lazy("Reason"), lambda e: e.reason),
    exports.Column(gettext_lazy("Source IP"), lambda e: e.source_ip),
]


@audit_reader_required
def audit_list(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None, user=request.user)
    if not form.is_bound:
        events = audit_search(request.user, AuditQuery())
    elif form.is_valid():
        events = audit_search(request.user, form.query())
    else:
        events = AuditEvent.objects.none()  # the errors are shown next to the fields
    # Only what a row shows: the before/after snapshots can be large.
    events = events.defer("before", "after", "prev_hash", "hash")
    fmt = exports.requested_format(request)
    if fmt:
        # The file is the log as it stood when asked for: without the export's own event,
        # so that the row count recorded in that event is the file's.
        last = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
        return exports.export_response(
            request, list_name="audit-log", queryset=events.filter(seq__lte=last), columns=AUDIT_COLUMNS, fmt=fmt
        )
    return render(
        request,
        "portal/audit_list.html",
        {
            "form": form,
            "reads_every_event": reads_every_audit_event(request.user),
            "page": paginate(request, events, per_page=50),
            "querystring": querystring_without_page(request),
        },
    )


@audit_reader_required
def audit_detail(request: HttpRequest, seq: int) -> HttpResponse:
    try:
        event = audit_events_visible_to(request.user).get(seq=seq)
    except AuditEvent.DoesNotExist as exc:
        raise Http404 from exc
    return render(
        request,
        "portal/audit_detail.html",
        {
            "event": event,
            "actor": _actor_display(event),
            "before": json.dumps(event.before, ensure_ascii=False, indent=2, sort_keys=True)
            if event.before is not None
            else "",
            "after": json.dumps(event.after, ensure_ascii=False, indent=2, sort_keys=True)
            if event.after is not None
            else "",
        },
    )
