"""The transactional outbox.

Domain events recorded by `insurance` arrive here inside the business
transaction; each becomes one outbox event per partner and object that
partner holds (unique per domain event, partner and object). Workers deliver
them later (payments.delivery); nothing is sent from inside a transaction.
"""

import json
import logging

from django.db import transaction
from django.utils import timezone

from insurance.models import Certificate
from payments.models import LinkageEndReason, LinkageState, OutboxEvent, Partner, WalletLinkage
from payments.representations import linkage_repr, rfc3339
from portal import domain_events
from portal.models import DomainEvent

logger = logging.getLogger(__name__)


def enqueue(*, partner: Partner, type: str, obj: dict, domain_event: DomainEvent | None = None,
            extra_data: dict | None = None) -> OutboxEvent:
    """Write one event for one partner; delivery is kicked after commit and swept by beat."""
    now = timezone.now()
    event = OutboxEvent(partner=partner, type=type, object_id=obj["id"], domain_event=domain_event,
                        created_at=now, next_attempt_at=now)
    data = {"object": obj}
    if extra_data:
        data.update(extra_data)
    event.body = json.dumps(
        {"id": event.public_id, "type": type, "created_at": rfc3339(now), "data": data},
        ensure_ascii=False, separators=(",", ":"),
    )
    event.save(force_insert=True)
    transaction.on_commit(lambda: _kick(event.pk))
    return event


def _kick(event_id: int) -> None:
    """Ask a worker to deliver now; if the broker is down, the beat sweep will."""
    from payments.tasks import deliver_event

    try:
        deliver_event.delay(event_id)
    except Exception:  # broker unreachable: the row is safe, the sweep delivers it
        logger.warning("could not enqueue delivery of outbox event %s; the sweep will deliver it", event_id)


def _bump(linkage: WalletLinkage, fields: list[str]) -> None:
    linkage.version += 1
    linkage.save(update_fields=[*fields, "version"])


def _on_certificate_event(event: DomainEvent) -> None:
    certificate = Certificate.objects.select_related("citizen").get(pk=event.data["certificate_id"])
    linkages = list(
        WalletLinkage.objects.select_for_update()
        .select_related("partner", "citizen")
        .filter(state=LinkageState.ACTIVE, citizen_id=certificate.citizen_id)
        .order_by("id")
    )
    if event.type == "certificate.reissued":
        # Linkages move to the new card, ids unchanged; partners hear `certificate.reissued` only.
        for linkage in linkages:
            linkage.certificate = certificate
            _bump(linkage, ["certificate"])
            enqueue(partner=linkage.partner, type=event.type, obj=linkage_repr(linkage), domain_event=event,
                    extra_data={"previous_number": event.data["previous_number"]})
        return
    linkages = [link for link in linkages if link.certificate_id == certificate.pk]
    if event.type == "certificate.activated" and event.data.get("cause") == "linkage":
        return  # the first linkage's `linkage.created` stands for the activation
    for linkage in linkages:
        linkage.certificate = certificate
        _bump(linkage, [])
        enqueue(partner=linkage.partner, type=event.type, obj=linkage_repr(linkage), domain_event=event)
    if event.type == "certificate.revoked":
        reason = (
            LinkageEndReason.CITIZEN_STATUS if event.data.get("cause") == "citizen_status"
            else LinkageEndReason.CERTIFICATE_REVOKED
        )
        for linkage in linkages:
            end_linkage(linkage, reason=reason, ended_by=event.data.get("actor", ""), domain_event=event)


def end_linkage(linkage: WalletLinkage, *, reason: str, ended_by: str, domain_event: DomainEvent | None) -> None:
    """Unlink a locked active linkage and tell its partner (`linkage.unlinked`)."""
    linkage.state = LinkageState.UNLINKED
    linkage.end_reason = reason
    linkage.ended_by = ended_by[:150]
    linkage.ended_at = timezone.now()
    _bump(linkage, ["state", "end_reason", "ended_by", "ended_at"])
    enqueue(partner=linkage.partner, type="linkage.unlinked", obj=linkage_repr(linkage), domain_event=domain_event)


def _on_citizen_updated(event: DomainEvent) -> None:
    """The embedded Citizen changed (masked name or scheme): the linkages' `version`
    grows (PARTNER_API.md "Objects"); there is no event type for it, so none is sent."""
    for linkage in WalletLinkage.objects.select_for_update().filter(
        state=LinkageState.ACTIVE, citizen_id=event.data["citizen_id"]
    ).order_by("id"):
        _bump(linkage, [])


def register_handlers() -> None:
    domain_events.subscribe("certificate.", _on_certificate_event)
    domain_events.subscribe("citizen.updated", _on_citizen_updated)
