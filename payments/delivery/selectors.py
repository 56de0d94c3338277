"""Reads of the delivery monitor: partners with their event counts, and the events a user may see."""

from django.db.models import Count, Q, QuerySet

from payments.models import FamilyBinding, OutboxEvent, OutboxState, Partner, WalletLinkage
from portal.scope import restrict_to_user_regions, visible_region_codes


def partners_for_monitor() -> QuerySet[Partner]:
    """Every partner (partners are national) with its pending, failing and dead counts."""
    return Partner.objects.annotate(
        pending_count=Count("events", filter=Q(events__state=OutboxState.PENDING)),
        failing_count=Count("events", filter=Q(events__state=OutboxState.PENDING, events__attempts__gt=0)),
        dead_count=Count("events", filter=Q(events__state=OutboxState.DEAD)),
    ).order_by("code")


def events_visible_to(user, partner: Partner) -> QuerySet[OutboxEvent]:
    """The partner's events the user may see: all for national operators; for a region
    administrator, those about linkages and family bindings of citizens in their regions."""
    events = OutboxEvent.objects.filter(partner=partner)
    if visible_region_codes(user) is None:
        return events
    linkage_ids = restrict_to_user_regions(
        WalletLinkage.objects.filter(partner=partner), user, region_field="citizen__region"
    ).values("public_id")
    bindings = FamilyBinding.objects.filter(partner=partner)
    beneficiary_ids = restrict_to_user_regions(bindings, user, region_field="beneficiary__region").values("public_id")
    holder_ids = restrict_to_user_regions(bindings, user, region_field="holder_citizen__region").values("public_id")
    return events.filter(Q(object_id__in=linkage_ids) | Q(object_id__in=beneficiary_ids) | Q(object_id__in=holder_ids))


def event_counts(events: QuerySet[OutboxEvent]) -> dict[str, int]:
    return events.aggregate(
        # Disjoint: an event waiting for its first attempt is pending, one whose attempts failed is failing.
        pending=Count("id", filter=Q(state=OutboxState.PENDING, attempts=0)),
        failing=Count("id", filter=Q(state=OutboxState.PENDING, attempts__gt=0)),
        dead=Count("id", filter=Q(state=OutboxState.DEAD)),
        delivered=Count("id", filter=Q(state=OutboxState.DELIVERED)),
    )


def dead_event_count(codes: list[str] | None) -> int:
    """Dead events (retries exhausted) about citizens of these regions (None: every region), over
    every partner: the delivery monitor's count in the menu. One query."""
    events = OutboxEvent.objects.filter(state=OutboxState.DEAD)
    if codes is not None:
        linkage_ids = WalletLinkage.objects.filter(citizen__region__in=codes).values("public_id")
        binding_ids = FamilyBinding.objects.filter(
            Q(beneficiary__region__in=codes) | Q(holder_citizen__region__in=codes)
        ).values("public_id")
        events = events.filter(Q(object_id__in=linkage_ids) | Q(object_id__in=binding_ids))
    return events.count()
