"""Writes to partners' linkages. Each is one transaction with its audit and outbox events."""

from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from insurance import services as insurance_services
from insurance.models import LIVE_STATES, Certificate, CertificateState, Citizen, CitizenStatus
from payments.api.representations import linkage_repr
from payments.delivery.outbox import end_linkage, enqueue
from payments.linkages.errors import LinkageErrorCode
from payments.models import LinkageEndReason, LinkageState, Partner, PartnerState, WalletLinkage
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError


def _linkage_audit(linkage: WalletLinkage) -> dict:
    return {
        "id": linkage.public_id,
        "partner": linkage.partner.code,
        "state": linkage.state,
        "end_reason": linkage.end_reason,
        "certificate": linkage.certificate.number,
        "version": linkage.version,
    }


@transaction.atomic
def linkage_create(
    *, actor: Actor, partner: Partner, citizen: Citizen, partner_user_ref: str, verification_reference: str = ""
) -> WalletLinkage:
    """Link the citizen's live card to a partner's wallet; a pending card becomes active."""
    partner = Partner.objects.select_for_update(no_key=True).get(pk=partner.pk)
    if partner.state != PartnerState.ACTIVE:
        raise DomainError(LinkageErrorCode.FORBIDDEN, _("This partner is suspended."), status=403)
    citizen = Citizen.objects.select_for_update(no_key=True).get(pk=citizen.pk)
    partner_user_ref = partner_user_ref.strip()
    if not partner_user_ref or len(partner_user_ref) > 128:
        raise DomainError(
            LinkageErrorCode.VALIDATION_ERROR,
            _("A partner user reference is 1 to 128 characters."),
            status=400,
            field="partner_user_ref",
        )
    certificate = (
        Certificate.objects.select_for_update(no_key=True)
        .filter(citizen=citizen, state__in=[CertificateState.PENDING_ACTIVATION, CertificateState.ACTIVE])
        .first()
    )
    if citizen.status != CitizenStatus.ACTIVE or certificate is None:
        raise DomainError(LinkageErrorCode.CERTIFICATE_UNAVAILABLE, _("The citizen has no e-card that can be linked."))
    existing = (
        WalletLinkage.objects.filter(partner=partner, state=LinkageState.ACTIVE).filter(citizen=citizen).first()
        or WalletLinkage.objects.filter(
            partner=partner, state=LinkageState.ACTIVE, partner_user_ref=partner_user_ref
        ).first()
    )
    if existing is not None:
        raise DomainError(
            LinkageErrorCode.LINKAGE_EXISTS,
            _("An active linkage already exists with this partner."),
            linkage_id=existing.public_id,
        )
    if certificate.state == CertificateState.PENDING_ACTIVATION:
        certificate = insurance_services.certificate_activate(actor=actor, certificate=certificate, cause="linkage")
    linkage = WalletLinkage(
        partner=partner,
        citizen=citizen,
        certificate=certificate,
        partner_user_ref=partner_user_ref,
        verification_reference=verification_reference[:128],
    )
    try:
        with transaction.atomic():
            linkage.save(force_insert=True)
    except IntegrityError as exc:
        raise DomainError(
            LinkageErrorCode.LINKAGE_EXISTS, _("An active linkage already exists with this partner.")
        ) from exc
    audit_record(
        actor=actor,
        action="linkage.create",
        object_type="linkage",
        object_id=linkage.public_id,
        region_code=citizen.region_id,
        after=_linkage_audit(linkage),
    )
    enqueue(partner=partner, type="linkage.created", obj=linkage_repr(linkage))
    return linkage


@transaction.atomic
def linkage_unlink(*, actor: Actor, linkage: WalletLinkage, reason: str, note: str = "") -> WalletLinkage:
    """End an active linkage (an ended one is returned unchanged)."""
    if reason not in LinkageEndReason.values:
        raise DomainError(LinkageErrorCode.VALIDATION_ERROR, _("Unknown reason."), status=400, field="reason")
    linkage = (
        WalletLinkage.objects.select_for_update(no_key=True, of=("self",))
        .select_related("partner", "citizen", "certificate")
        .get(pk=linkage.pk)
    )
    if linkage.state != LinkageState.ACTIVE:
        return linkage
    before = _linkage_audit(linkage)
    # The family bindings made through it end with it (`holder_unlinked`), each audited.
    end_linkage(linkage, reason=reason, ended_by=actor.label, domain_event=None, actor=actor)
    audit_record(
        actor=actor,
        action="linkage.unlink",
        object_type="linkage",
        object_id=linkage.public_id,
        region_code=linkage.citizen.region_id,
        before=before,
        after=_linkage_audit(linkage),
        reason=note or reason,
    )
    return linkage


__all__ = ["linkage_create", "linkage_unlink", "LIVE_STATES"]
