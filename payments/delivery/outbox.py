"""The transactional outbox.

Domain events recorded by `insurance` arrive here inside the business
transaction; each becomes one outbox event per partner and object that
partner holds (unique per domain event, partner and object). Workers deliver
them later (payments.delivery); nothing is sent from inside a transaction.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import transaction
from django.utils import timezone

from insurance.models import Certificate
from payments import rows
from payments.api.representations import family_binding_repr, linkage_repr, rfc3339
from payments.delivery import services as delivery
from payments.models import (
    BINDING_OPEN_STATES,
    BindingEndReason,
    BindingState,
    FamilyBinding,
    LinkageEndReason,
    LinkageState,
    OutboxEvent,
    Partner,
    WalletLinkage,
)
from portal import domain_events
from portal.actors import Actor
from portal.audit import audit_record
from portal.models import DomainEvent
from portal.observability import requestid


def enqueue(
    *, partner: Partner, type: str, obj: dict, domain_event: DomainEvent | None = None, extra_data: dict | None = None
) -> OutboxEvent:
    """Write one event for one partner; delivery is kicked after commit and swept by beat."""
    event = outbox_event(partner=partner, type=type, obj=obj, domain_event=domain_event, extra_data=extra_data)
    rows.insert(event)  # as save(force_insert=True), without compiling the INSERT on every event
    enqueued(event)
    return event


def outbox_event(
    *, partner: Partner, type: str, obj: dict, domain_event: DomainEvent | None = None, extra_data: dict | None = None
) -> OutboxEvent:
    """The event `enqueue` writes, not yet written: for a service that writes it inside a statement of
    its own (`rows.insert_sql`), then calls `enqueued`."""
    now = timezone.now()
    event = OutboxEvent(
        partner=partner,
        type=type,
        object_id=obj["id"],
        domain_event=domain_event,
        created_at=now,
        next_attempt_at=now,
        request_id=requestid.current(),
    )
    data = {"object": obj}
    if extra_data:
        data.update(extra_data)
    event.body = json.dumps(
        {"id": event.public_id, "type": type, "created_at": rfc3339(now), "data": data},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return event


def enqueued(event: OutboxEvent) -> None:
    """`event` is written (its pk set): ask a worker to deliver it once the transaction commits."""
    transaction.on_commit(delivery.kick_sweep)


def _bump(linkage: WalletLinkage, fields: list[str]) -> None:
    linkage.version += 1
    linkage.save(update_fields=[*fields, "version"])


def bump_binding(binding: FamilyBinding, fields: list[str]) -> None:
    binding.version += 1
    binding.save(update_fields=[*fields, "version"])


# Bindings whose own event stands for a card change made on their account: the
# approval of a binding activates the beneficiary's pending card, and that
# binding's partner hears `family_binding.activated`, not `certificate.activated`.
_bindings_heard_otherwise: ContextVar[frozenset[int]] = ContextVar("bindings_heard_otherwise", default=frozenset())


@contextmanager
def binding_hears_its_own_event(binding_pk: int) -> Iterator[None]:
    token = _bindings_heard_otherwise.set(_bindings_heard_otherwise.get() | {binding_pk})
    try:
        yield
    finally:
        _bindings_heard_otherwise.reset(token)


def _open_bindings(**filters: object) -> list[FamilyBinding]:
    return list(
        FamilyBinding.objects.select_for_update(of=("self",))
        .select_related("partner", "beneficiary", "holder_linkage")
        .filter(state__in=BINDING_OPEN_STATES, **filters)
        .order_by("id")
    )


def _cascade_actor(event: DomainEvent) -> Actor:
    return Actor.system(event.data.get("actor") or "portal")


def _on_certificate_event(event: DomainEvent) -> None:
    """PARTNER_API.md "What a card's change does": the partners holding the card hear it,
    through their linkages (object: the Linkage) and through their open family bindings
    whose beneficiary holds it (object: the Family binding)."""
    certificate = Certificate.objects.select_related("citizen").get(pk=event.data["certificate_id"])
    linkages = list(
        WalletLinkage.objects.select_for_update(no_key=True, of=("self",))
        .select_related("partner", "citizen")
        .filter(state=LinkageState.ACTIVE, citizen_id=certificate.citizen_id)
        .order_by("id")
    )
    quiet = _bindings_heard_otherwise.get()
    bindings = [b for b in _open_bindings(beneficiary_id=certificate.citizen_id) if b.pk not in quiet]
    if event.type == "certificate.reissued":
        # Linkages and bindings move to the new card, ids unchanged; partners hear `certificate.reissued` only.
        extra = {"previous_number": event.data["previous_number"]}
        for linkage in linkages:
            linkage.certificate = certificate
            _bump(linkage, ["certificate"])
            enqueue(
                partner=linkage.partner,
                type=event.type,
                obj=linkage_repr(linkage),
                domain_event=event,
                extra_data=extra,
            )
        for binding in bindings:
            bump_binding(binding, [])
            enqueue(
                partner=binding.partner,
                type=event.type,
                obj=family_binding_repr(binding),
                domain_event=event,
                extra_data=extra,
            )
        return
    linkages = [link for link in linkages if link.certificate_id == certificate.pk]
    # The first linkage's `linkage.created` stands for the activation (to that linkage's partner only).
    if not (event.type == "certificate.activated" and event.data.get("cause") == "linkage"):
        for linkage in linkages:
            linkage.certificate = certificate
            _bump(linkage, [])
            enqueue(partner=linkage.partner, type=event.type, obj=linkage_repr(linkage), domain_event=event)
    for binding in bindings:
        bump_binding(binding, [])
        enqueue(partner=binding.partner, type=event.type, obj=family_binding_repr(binding), domain_event=event)
    if event.type == "certificate.revoked":
        citizen_status = event.data.get("cause") == "citizen_status"
        reason = LinkageEndReason.CITIZEN_STATUS if citizen_status else LinkageEndReason.CERTIFICATE_REVOKED
        binding_reason = BindingEndReason.CITIZEN_STATUS if citizen_status else BindingEndReason.CERTIFICATE_REVOKED
        actor = _cascade_actor(event)
        for linkage in linkages:
            end_linkage(
                linkage,
                reason=reason,
                ended_by=event.data.get("actor", ""),
                domain_event=event,
                binding_reason=binding_reason,
                actor=actor,
            )
        # Either side: bindings presenting this card, and any the citizen still holds.
        for binding in bindings + _open_bindings(holder_citizen_id=certificate.citizen_id):
            end_binding(binding, reason=binding_reason, actor=actor, domain_event=event)


def end_linkage(
    linkage: WalletLinkage,
    *,
    reason: str,
    ended_by: str,
    domain_event: DomainEvent | None,
    binding_reason: str = BindingEndReason.HOLDER_UNLINKED,
    actor: Actor | None = None,
) -> None:
    """Unlink a locked active linkage and tell its partner (`linkage.unlinked`); the family
    bindings made through it end too (`holder_unlinked`, or the card's reason)."""
    linkage.state = LinkageState.UNLINKED
    linkage.end_reason = reason
    linkage.ended_by = ended_by[:150]
    linkage.ended_at = timezone.now()
    _bump(linkage, ["state", "end_reason", "ended_by", "ended_at"])
    enqueue(partner=linkage.partner, type="linkage.unlinked", obj=linkage_repr(linkage), domain_event=domain_event)
    actor = actor or Actor.system(ended_by or "portal")
    for binding in _open_bindings(holder_linkage_id=linkage.pk):
        end_binding(binding, reason=binding_reason, actor=actor, domain_event=domain_event)


def end_binding(
    binding: FamilyBinding,
    *,
    reason: str,
    actor: Actor,
    domain_event: DomainEvent | None = None,
    state: str = BindingState.REVOKED,
    note: str = "",
) -> FamilyBinding:
    """End a locked open binding (`revoked`, or `rejected` while pending), audit it and
    tell its partner (`family_binding.revoked` / `family_binding.rejected`)."""
    before = binding_audit(binding)
    binding.state = state
    binding.end_reason = reason
    binding.ended_at = timezone.now()
    fields = ["state", "end_reason", "ended_at"]
    if state == BindingState.REJECTED:
        binding.decided_by = actor.label[:150]
        binding.decided_at = binding.ended_at
        binding.decision_note = note[:256]
        fields += ["decided_by", "decided_at", "decision_note"]
    bump_binding(binding, fields)
    action = "reject" if state == BindingState.REJECTED else "revoke"
    audit_record(
        actor=actor,
        action=f"family_binding.{action}",
        object_type="family_binding",
        object_id=binding.public_id,
        region_code=binding.beneficiary.region_id,
        before=before,
        after=binding_audit(binding),
        reason=note or reason,
    )
    enqueue(
        partner=binding.partner,
        type=f"family_binding.{'rejected' if action == 'reject' else 'revoked'}",
        obj=family_binding_repr(binding),
        domain_event=domain_event,
    )
    return binding


def binding_audit(binding: FamilyBinding) -> dict:
    """What the audit log keeps of a binding (masked: no names or numbers in clear)."""
    return {
        "id": binding.public_id,
        "partner": binding.partner.code,
        "holder_linkage": binding.holder_linkage.public_id,
        "beneficiary_id_number_masked": binding.beneficiary.id_number_masked,
        "relationship": binding.relationship,
        "state": binding.state,
        "end_reason": binding.end_reason,
        "version": binding.version,
    }


def _on_citizen_updated(event: DomainEvent) -> None:
    """The embedded Citizen changed (masked name or scheme): the `version` of the linkages
    and of the bindings presenting the citizen grows (PARTNER_API.md "Objects"); there is
    no event type for it, so none is sent."""
    for linkage in (
        WalletLinkage.objects.select_for_update(no_key=True)
        .filter(state=LinkageState.ACTIVE, citizen_id=event.data["citizen_id"])
        .order_by("id")
    ):
        _bump(linkage, [])
    for binding in _open_bindings(beneficiary_id=event.data["citizen_id"]):
        bump_binding(binding, [])


def _on_citizen_status(event: DomainEvent) -> None:
    """A citizen marked deceased or moved out: whatever their card's state (an expired card
    keeps its linkages), their linkages are unlinked and their bindings on either side end
    (`citizen_status`). Live cards were revoked just before, which already ended most."""
    if event.data.get("status") == "active":
        return
    actor = _cascade_actor(event)
    citizen_id = event.data["citizen_id"]
    linkages = (
        WalletLinkage.objects.select_for_update(no_key=True, of=("self",))
        .select_related("partner", "citizen", "certificate")
        .filter(state=LinkageState.ACTIVE, citizen_id=citizen_id)
        .order_by("id")
    )
    for linkage in linkages:
        end_linkage(
            linkage,
            reason=LinkageEndReason.CITIZEN_STATUS,
            ended_by=event.data.get("actor", ""),
            domain_event=event,
            binding_reason=BindingEndReason.CITIZEN_STATUS,
            actor=actor,
        )
    for binding in _open_bindings(beneficiary_id=citizen_id) + _open_bindings(holder_citizen_id=citizen_id):
        end_binding(binding, reason=BindingEndReason.CITIZEN_STATUS, actor=actor, domain_event=event)


def register_handlers() -> None:
    domain_events.subscribe("certificate.", _on_certificate_event)
    domain_events.subscribe("citizen.status", _on_citizen_status)
    domain_events.subscribe("citizen.updated", _on_citizen_updated)
