"""Scoped reads of the audit log.

An event belongs to the region recorded in its `region_code` (the services
record the region of the citizen, facility, policy or flag they change).
Who opens the log at all is portal/views_audit.py's decision (auditors; a
national operator only where the deployment allows it). Within it, auditors see
the events of their regions; a national operator sees every event. Events
recorded without a region (partners, keys, the national catalogue, staff
accounts spanning several regions, exports across several regions) are
national: only a national operator allowed to read the log sees them.
"""

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import QuerySet

from portal.models import AuditEvent
from portal.scope import restrict_to_user_regions


def audit_events_visible_to(user) -> QuerySet[AuditEvent]:
    return restrict_to_user_regions(AuditEvent.objects.all(), user, region_field="region_code")


@dataclass(frozen=True)
class AuditQuery:
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    action: str = ""
    actor: str = ""
    object_type: str = ""
    object_id: str = ""
    region: str = ""


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=ZoneInfo(settings.TIME_ZONE))


def audit_search(user, query: AuditQuery) -> QuerySet[AuditEvent]:
    """The user's events matching the filters, newest first (by sequence number, the chain's order)."""
    events = audit_events_visible_to(user)
    if query.date_from:
        events = events.filter(created_at__gte=_day_start(query.date_from))
    if query.date_to:
        events = events.filter(created_at__lt=_day_start(query.date_to + dt.timedelta(days=1)))
    if query.action:
        # "certificate." finds every e-card action; "certificate.revoke" just that one.
        events = events.filter(action__startswith=query.action)
    if query.actor:
        events = events.filter(actor_label=query.actor)
    if query.object_type:
        events = events.filter(object_type=query.object_type)
    if query.object_id:
        events = events.filter(object_id=query.object_id)
    if query.region:
        events = events.filter(region_code=query.region)
    return events.order_by("-seq")
