"""Family bindings (亲情账户): a holder presents a beneficiary's e-card through the
holder's wallet linkage (DESIGN.md section 3, PARTNER_API.md "Family binding").

Every write is one transaction with its audit event and outbox events; every
change grows the binding's `version` by one. Scoped reads for the screens are
at the end.
"""

import unicodedata
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from insurance import services as insurance_services
from insurance.models import Certificate, CertificateState, Citizen, CitizenStatus
from payments.api.representations import family_binding_repr
from payments.bindings.errors import BindingErrorCode
from payments.delivery.outbox import binding_audit, binding_hears_its_own_event, bump_binding, end_binding, enqueue
from payments.models import (
    BINDING_OPEN_STATES,
    BindingEndReason,
    BindingState,
    FamilyBinding,
    LinkageState,
    Partner,
    PartnerState,
    Relationship,
    WalletLinkage,
)
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError, InvalidTransition
from portal.models import User
from portal.scope import restrict_to_user_regions, user_may_see_region

MAX_OPEN_BINDINGS_PER_HOLDER = 5
UNDECIDED_AFTER = timedelta(days=30)
# A beneficiary's card can be presented once it is live and not suspended.
USABLE_CARD_STATES = (CertificateState.PENDING_ACTIVATION, CertificateState.ACTIVE)


def _same_name(given: str, recorded: str) -> bool:
    return unicodedata.normalize("NFKC", given).strip() == unicodedata.normalize("NFKC", recorded).strip()


def _text(value: str, *, field: str, max_length: int) -> str:
    value = (value or "").strip()
    if not value or len(value) > max_length:
        raise DomainError(
            BindingErrorCode.VALIDATION_ERROR,
            _("This field is 1 to %(max)d characters.") % {"max": max_length},
            status=400,
            field=field,
        )
    return value


@transaction.atomic
def family_binding_create(
    *,
    actor: Actor,
    partner: Partner,
    holder_linkage: WalletLinkage,
    beneficiary_id_number: str,
    beneficiary_name: str,
    relationship: str,
    consent_reference: str,
) -> FamilyBinding:
    """A `pending` binding until a clerk of the beneficiary's region decides.

    Refusals in the contract's order: 422 `identity_mismatch`, 400 `validation_error`
    (one person), 409 `certificate_unavailable`, 409 `binding_exists`,
    409 `binding_limit_reached` (five open per holder citizen, all partners together).
    """
    if relationship not in Relationship.values:
        raise DomainError(
            BindingErrorCode.VALIDATION_ERROR, _("Unknown relationship."), status=400, field="relationship"
        )
    consent_reference = _text(consent_reference, field="consent_reference", max_length=128)
    partner = Partner.objects.get(pk=partner.pk)
    if partner.state != PartnerState.ACTIVE:
        raise DomainError(BindingErrorCode.FORBIDDEN, _("This partner is suspended."), status=403)
    # The holder citizen's row serialises every create for that holder, whatever the
    # partner, so that concurrent requests cannot pass the limit together. Citizen
    # before linkage, the order linkage_create uses.
    holder_citizen_id = WalletLinkage.objects.values_list("citizen_id", flat=True).get(pk=holder_linkage.pk)
    holder = Citizen.objects.select_for_update(no_key=True).get(pk=holder_citizen_id)
    holder_linkage = WalletLinkage.objects.select_for_update(no_key=True).get(pk=holder_linkage.pk)
    if holder_linkage.partner_id != partner.pk:
        raise DomainError(BindingErrorCode.NOT_FOUND, _("Not found."), status=404)
    if holder_linkage.state != LinkageState.ACTIVE:
        raise DomainError(BindingErrorCode.LINKAGE_INACTIVE, _("The holder's wallet linkage has ended."))

    beneficiary_pk = insurance_services.find_citizen_id_by_id_number(beneficiary_id_number or "")
    beneficiary = Citizen.objects.filter(pk=beneficiary_pk).first() if beneficiary_pk else None
    if beneficiary is None or not _same_name(beneficiary_name or "", beneficiary.name):
        raise DomainError(
            BindingErrorCode.IDENTITY_MISMATCH,
            _("The identity number and name do not match a registered citizen."),
            status=422,
        )
    if beneficiary.pk == holder.pk:
        raise DomainError(
            BindingErrorCode.VALIDATION_ERROR,
            _("The holder and the beneficiary are the same person."),
            status=400,
            field="beneficiary_id_number",
        )
    card = (
        Certificate.objects.select_for_update(no_key=True)
        .filter(citizen=beneficiary, state__in=USABLE_CARD_STATES)
        .first()
    )
    if beneficiary.status != CitizenStatus.ACTIVE or card is None:
        raise DomainError(
            BindingErrorCode.CERTIFICATE_UNAVAILABLE, _("The beneficiary has no e-card that can be used.")
        )
    open_bindings = FamilyBinding.objects.filter(state__in=BINDING_OPEN_STATES)
    existing = open_bindings.filter(partner=partner, holder_citizen=holder, beneficiary=beneficiary).first()
    if existing is not None:
        raise DomainError(
            BindingErrorCode.BINDING_EXISTS,
            _("An open family binding already exists for this holder and beneficiary."),
            family_binding_id=existing.public_id,
        )
    if open_bindings.filter(holder_citizen=holder).count() >= MAX_OPEN_BINDINGS_PER_HOLDER:
        raise DomainError(
            BindingErrorCode.BINDING_LIMIT_REACHED, _("The holder already has five active or pending family bindings.")
        )
    binding = FamilyBinding(
        partner=partner,
        holder_linkage=holder_linkage,
        holder_citizen=holder,
        beneficiary=beneficiary,
        relationship=relationship,
        consent_reference=consent_reference,
        state=BindingState.PENDING,
    )
    try:
        with transaction.atomic():
            binding.save(force_insert=True)
    except IntegrityError as exc:  # the partial unique constraint
        raise DomainError(
            BindingErrorCode.BINDING_EXISTS, _("An open family binding already exists for this holder and beneficiary.")
        ) from exc
    audit_record(
        actor=actor,
        action="family_binding.create",
        object_type="family_binding",
        object_id=binding.public_id,
        region_code=beneficiary.region_id,
        after=binding_audit(binding),
    )
    return binding


def _locked(binding: FamilyBinding) -> FamilyBinding:
    return (
        FamilyBinding.objects.select_for_update(of=("self",))
        .select_related("partner", "beneficiary", "holder_linkage")
        .get(pk=binding.pk)
    )


def _require_decider(actor: Actor, binding: FamilyBinding) -> None:
    """A person deciding must be a writer of the beneficiary's region (others: 404, as on screens)."""
    if actor.user_id is None:
        return
    user = User.objects.filter(pk=actor.user_id, is_active=True).first()
    if user is None or not user_may_see_region(user, binding.beneficiary.region_id):
        raise DomainError(BindingErrorCode.NOT_FOUND, _("Not found."), status=404)
    if not user.can_write_citizens:
        raise DomainError(BindingErrorCode.FORBIDDEN, _("Auditors are read-only."), status=403)


def _required_note(note: str) -> str:
    return _text(note, field="note", max_length=128)


@transaction.atomic
def family_binding_approve(*, actor: Actor, binding: FamilyBinding, note: str = "") -> FamilyBinding:
    """pending -> active; a `pending_activation` beneficiary card becomes active
    (`certificate.activated` to the other partners holding it)."""
    note = (note or "").strip()[:128]
    beneficiary_id = FamilyBinding.objects.values_list("beneficiary_id", flat=True).get(pk=binding.pk)
    # The card before the binding: the same lock order as a card change's fan-out.
    card = (
        Certificate.objects.select_for_update(no_key=True)
        .filter(citizen_id=beneficiary_id, state__in=[*USABLE_CARD_STATES, CertificateState.SUSPENDED])
        .first()
    )
    binding = _locked(binding)
    _require_decider(actor, binding)
    if binding.state != BindingState.PENDING:
        raise InvalidTransition(str(_("family binding")), binding.get_state_display(), "approve")
    if card is None or binding.beneficiary.status != CitizenStatus.ACTIVE:
        raise DomainError(
            BindingErrorCode.CERTIFICATE_UNAVAILABLE, _("The beneficiary has no e-card that can be used.")
        )
    before = binding_audit(binding)
    if card.state == CertificateState.PENDING_ACTIVATION:
        with binding_hears_its_own_event(binding.pk):
            insurance_services.certificate_activate(actor=actor, certificate=card, cause="family_binding")
    binding.state = BindingState.ACTIVE
    binding.decided_by = actor.label[:150]
    binding.decided_at = timezone.now()
    binding.decision_note = note
    bump_binding(binding, ["state", "decided_by", "decided_at", "decision_note"])
    audit_record(
        actor=actor,
        action="family_binding.approve",
        object_type="family_binding",
        object_id=binding.public_id,
        region_code=binding.beneficiary.region_id,
        before=before,
        after=binding_audit(binding),
        reason=note,
    )
    enqueue(partner=binding.partner, type="family_binding.activated", obj=family_binding_repr(binding))
    return binding


@transaction.atomic
def family_binding_reject(*, actor: Actor, binding: FamilyBinding, note: str) -> FamilyBinding:
    """pending -> rejected (`clerk`), with the clerk's reason."""
    note = _required_note(note)
    binding = _locked(binding)
    _require_decider(actor, binding)
    if binding.state != BindingState.PENDING:
        raise InvalidTransition(str(_("family binding")), binding.get_state_display(), "reject")
    return end_binding(binding, reason=BindingEndReason.CLERK, actor=actor, state=BindingState.REJECTED, note=note)


@transaction.atomic
def family_binding_revoke(*, actor: Actor, binding: FamilyBinding, reason: str, note: str = "") -> FamilyBinding:
    """pending | active -> revoked; an ended binding is returned unchanged."""
    if reason not in (BindingEndReason.PARTNER_REQUEST, BindingEndReason.CLERK):
        raise DomainError(BindingErrorCode.VALIDATION_ERROR, _("Unknown reason."), status=400, field="reason")
    binding = _locked(binding)
    if reason == BindingEndReason.CLERK:
        _require_decider(actor, binding)
    if binding.state not in BINDING_OPEN_STATES:
        return binding
    return end_binding(binding, reason=reason, actor=actor, note=(note or "").strip()[:128])


@transaction.atomic
def _expire_one(binding_pk: int, *, actor: Actor, cutoff) -> bool:
    binding = _locked(FamilyBinding(pk=binding_pk))
    if binding.state != BindingState.PENDING or binding.created_at > cutoff:
        return False
    end_binding(binding, reason=BindingEndReason.TIMEOUT, actor=actor, state=BindingState.REJECTED)
    return True


def family_bindings_expire_undecided(batch: int = 500) -> int:
    """Pending for 30 days -> `rejected` (`timeout`), each in its own transaction."""
    actor = Actor.system("binding-timeout")
    cutoff = timezone.now() - UNDECIDED_AFTER
    ids = list(
        FamilyBinding.objects.filter(state=BindingState.PENDING, created_at__lte=cutoff)
        .order_by("created_at", "id")
        .values_list("id", flat=True)[:batch]
    )
    return sum(1 for pk in ids if _expire_one(pk, actor=actor, cutoff=cutoff))


# --- Scoped reads -------------------------------------------------------------


def bindings_visible_to(user) -> QuerySet[FamilyBinding]:
    """Bindings whose BENEFICIARY is insured in one of the user's regions."""
    return restrict_to_user_regions(
        FamilyBinding.objects.select_related(
            "partner", "beneficiary", "beneficiary__region", "holder_citizen", "holder_linkage"
        ),
        user,
        region_field="beneficiary__region",
    )


def bindings_of_citizen(user, citizen: Citizen) -> QuerySet[FamilyBinding]:
    """Both sides: where the citizen holds, or is presented; still scoped by the beneficiary."""
    return bindings_visible_to(user).filter(Q(holder_citizen=citizen) | Q(beneficiary=citizen))
