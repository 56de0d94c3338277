"""The audit log viewer, the auditors' duty (separation of duties, DESIGN §2):
auditors see the events of their regions and export them; an auditor of every
region (a national auditor) also sees the national events, the system
administrator's and the security officer's (portal/selectors_audit.py decides).
A national operator reads it, every event, only where the
deployment sets ECARD_ALLOW_OPERATOR_AUDITOR and the account was made an
auditor too (`User.also_auditor`); otherwise national operators, security
officers, region administrators and clerks are refused (403). An event outside
the user's scope answers 404, like a missing one. Read-only: the log is append-only."""

import datetime as dt
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from portal import audit_links, exports
from portal.audit_labels import (
    OBJECT_TYPE_LABELS,
    action_label,
    actor_label,
    actor_type_label,
    object_type_label,
    reason_label,
)
from portal.models import AuditEvent
from portal.replica import replica_reads
from portal.scope import regions_visible_to
from portal.screens import paginate, querystring_without_page
from portal.selectors_audit import AuditQuery, audit_events_visible_to, audit_search, reads_every_audit_event

OBJECT_TYPES = list(OBJECT_TYPE_LABELS.items())


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
        help_text=gettext_lazy(
            "Words of the action (e.g. suspended), or its code: certificate. for every e-card action"
        ),
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
            (r.code, r.display_name) for r in regions_visible_to(user)
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


def _label_events(events: list[AuditEvent], user) -> None:
    """What a row shows instead of the stored codes: labels, the region's name, the object's link."""
    names = exports.region_names()
    urls = audit_links.object_urls(user, ((e.object_type, e.object_id) for e in events))
    for event in events:
        event.actor_type_label = actor_type_label(event.actor_type)
        event.actor_name = actor_label(event.actor_type, event.actor_label)
        event.object_type_label = object_type_label(event.object_type)
        event.region_name = names.get(event.region_code, event.region_code)
        event.reason_label = reason_label(event.reason)
        event.object_url = urls.get((event.object_type, event.object_id), "")


def _audit_columns() -> list[exports.Column]:
    return [
        exports.Column(gettext_lazy("Sequence"), lambda e: e.seq),
        exports.Column(gettext_lazy("Time"), lambda e: e.created_at),
        exports.Column(gettext_lazy("Actor type"), lambda e: actor_type_label(e.actor_type)),
        exports.Column(gettext_lazy("Actor"), lambda e: actor_label(e.actor_type, e.actor_label)),
        exports.Column(gettext_lazy("Action"), lambda e: e.action),
        exports.Column(gettext_lazy("What happened"), lambda e: action_label(e.action)),
        exports.Column(gettext_lazy("Object type"), lambda e: object_type_label(e.object_type)),
        exports.Column(gettext_lazy("Object ID"), lambda e: e.object_id),
        exports.RegionColumn(gettext_lazy("Region"), lambda e: e.region_code),
        exports.Column(gettext_lazy("Reason"), lambda e: reason_label(e.reason)),
        exports.Column(gettext_lazy("Source IP"), lambda e: e.source_ip),
    ]


def _in_beijing_time(value: Any) -> Any:
    """A snapshot with its timestamps (ISO 8601 with an offset, as stored: UTC) in Asia/Shanghai."""
    if isinstance(value, dict):
        return {key: _in_beijing_time(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_in_beijing_time(item) for item in value]
    if isinstance(value, str) and len(value) >= 20 and value[10:11] == "T":
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            return timezone.localtime(moment).isoformat()
    return value


def _snapshot(data: Any) -> str:
    if data is None:
        return ""
    return json.dumps(_in_beijing_time(data), ensure_ascii=False, indent=2, sort_keys=True)


@audit_reader_required
@replica_reads
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
            request, list_name="audit-log", queryset=events.filter(seq__lte=last), columns=_audit_columns(), fmt=fmt
        )
    page = paginate(request, events, per_page=50)
    page.object_list = list(page.object_list)
    _label_events(page.object_list, request.user)
    return render(
        request,
        "portal/audit_list.html",
        {
            "form": form,
            "reads_every_event": reads_every_audit_event(request.user),
            "page": page,
            "querystring": querystring_without_page(request),
        },
    )


@audit_reader_required
def audit_detail(request: HttpRequest, seq: int) -> HttpResponse:
    try:
        event = audit_events_visible_to(request.user).get(seq=seq)
    except AuditEvent.DoesNotExist as exc:
        raise Http404 from exc
    _label_events([event], request.user)
    return render(
        request,
        "portal/audit_detail.html",
        {"event": event, "before": _snapshot(event.before), "after": _snapshot(event.after)},
    )
