"""Scoped reads of the audit log: the one place that decides which events a person reads.

An event belongs to the region recorded in its `region_code` (the services
record the region of the citizen, facility, policy or flag they change).
Events recorded without a region (partners, partner keys, the portal's signing
keys, the national catalogue, staff accounts spanning several regions, exports
across several regions) are national: they record the system administrator's
and the security officer's work, which the audit duty exists to watch
(separation of duties, DESIGN §2).

Who reads what:
- an auditor assigned to every pilot region (every Region row) is a national
  auditor and reads every event, national ones included;
- an auditor of some regions reads those regions' events only;
- a national operator reads every event, but only where the deployment allows
  it to read the log at all (`User.reads_audit_log`);
- nobody else reads any (portal/views_audit.py answers them 403 first).
"""

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Q, QuerySet

from portal.audit_labels import actions_matching
from portal.models import AuditEvent, Region, Role
from portal.scope import visible_region_codes


def _audit_scope(user) -> list[str] | None:
    """The region codes whose events the user reads, None for every event (national ones included)."""
    if not getattr(user, "reads_audit_log", False):
        return []
    codes = visible_region_codes(user)
    if codes is None:
        return None
    # A national auditor: assigned to every region, so to the national events too. A region
    # added later is not theirs until assigned, and until then neither are the national events.
    if user.role == Role.AUDITOR and codes and not Region.objects.exclude(code__in=codes).exists():
        return None
    return codes


def reads_every_audit_event(user) -> bool:
    """A national auditor, or a national operator allowed to read the log."""
    return _audit_scope(user) is None


def audit_events_visible_to(user) -> QuerySet[AuditEvent]:
    codes = _audit_scope(user)
    if codes is None:
        return AuditEvent.objects.all()
    return AuditEvent.objects.filter(region_code__in=codes)


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
        # "certificate." finds every e-card action, "certificate.revoke" just that one; words
        # find the actions whose label (in the reader's language) holds them: 暂停 → certificate.suspend.
        events = events.filter(Q(action__startswith=query.action) | Q(action__in=actions_matching(query.action)))
    if query.actor:
        events = events.filter(actor_label=query.actor)
    if query.object_type:
        events = events.filter(object_type=query.object_type)
    if query.object_id:
        events = events.filter(object_id=query.object_id)
    if query.region:
        events = events.filter(region_code=query.region)
    return events.order_by("-seq")
