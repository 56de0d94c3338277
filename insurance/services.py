"""Every write to citizens and e-cards. Each function is one transaction that
checks the transition, writes the rows, the audit event and the domain event."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from insurance.citizen_values import (
    CitizenCiphers,
    citizen_fields,
    citizen_values,
    phone_values,
)
from insurance.errors import InsuranceErrorCode
from insurance.identity import InvalidIdentityNumber, parse_identity_number
from insurance.models import (
    ID_NUMBER_PURPOSE,
    LIVE_STATES,
    Certificate,
    CertificateState,
    CertificateTransition,
    Citizen,
    CitizenStatus,
    EndReason,
    Scheme,
)
from insurance.snapshots import certificate_snapshot, citizen_snapshot
from portal import domain_events
from portal.actors import Actor
from portal.audit import audit_record
from portal.crypto import blind_index_candidates
from portal.errors import DomainError, InvalidTransition
from portal.masking import mask_id_number
from portal.models import Region
from portal.text import text_refusal

CERTIFICATE_VALIDITY = timedelta(days=getattr(settings, "ECARD_CERTIFICATE_VALIDITY_DAYS", 3650))

# Which actions each state allows; the target state of the simple ones.
_TRANSITIONS: dict[str, dict[str, str]] = {
    "activate": {CertificateState.PENDING_ACTIVATION: CertificateState.ACTIVE},
    "suspend": {CertificateState.ACTIVE: CertificateState.SUSPENDED},
    "reinstate": {CertificateState.SUSPENDED: CertificateState.ACTIVE},
    "revoke": {state: CertificateState.REVOKED for state in LIVE_STATES},
    "expire": {CertificateState.ACTIVE: CertificateState.EXPIRED, CertificateState.SUSPENDED: CertificateState.EXPIRED},
    "reissue": {
        CertificateState.ACTIVE: CertificateState.REVOKED,
        CertificateState.SUSPENDED: CertificateState.REVOKED,
        CertificateState.EXPIRED: CertificateState.EXPIRED,
    },
}
ACTIONS = tuple(_TRANSITIONS)


def allowed_actions(certificate: Certificate) -> list[str]:
    """Actions a person may take on this card now (activation is the partners')."""
    return [a for a, table in _TRANSITIONS.items() if certificate.state in table and a not in {"activate", "expire"}]


# --- Citizens ---------------------------------------------------------------


def find_citizen_id_by_id_number(id_number: str) -> int | None:
    """Exact lookup through the blind index: one indexed query."""
    candidates = blind_index_candidates(id_number.strip().upper(), purpose=ID_NUMBER_PURPOSE)
    return Citizen.objects.filter(id_number_bidx__in=candidates).values_list("id", flat=True).first()


def _validated_identity(id_number: str):
    try:
        return parse_identity_number(id_number)
    except InvalidIdentityNumber as exc:
        raise DomainError(InsuranceErrorCode.INVALID_ID_NUMBER, exc.message, status=400, field="id_number") from exc


def _validated_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64:
        raise DomainError(
            InsuranceErrorCode.VALIDATION_ERROR, _("A name is 1 to 64 characters."), status=400, field="name"
        )
    if refusal := text_refusal(name):
        raise DomainError(InsuranceErrorCode.VALIDATION_ERROR, refusal, status=400, field="name")
    return name


def _check_scheme(scheme: str) -> None:
    if scheme not in Scheme.values:
        raise DomainError(InsuranceErrorCode.VALIDATION_ERROR, _("Unknown scheme."), status=400, field="scheme")


def citizen_exists_error() -> DomainError:
    """The refusal of a number already registered: one message wherever the citizen is insured,
    so that a clerk learns that the number is taken, never in which region."""
    return DomainError(
        InsuranceErrorCode.CITIZEN_EXISTS,
        _("This identity number is already registered and cannot be registered again."),
        field="id_number",
    )


@transaction.atomic
def citizen_register_refused(
    *, actor: Actor, id_numbers: list[str], region: Region, context: dict | None = None
) -> None:
    """Audit registrations refused because the numbers are already registered (the refused
    registration's own transaction is rolled back): the masked numbers, never the clear ones,
    and not the existing citizens, who may be in a region the actor does not see."""
    audit_record(
        actor=actor,
        action="citizen.register_refused",
        object_type="citizen",
        object_id="",
        region_code=region.code,
        reason="already registered",
        after={"id_numbers_masked": [mask_id_number(n) for n in id_numbers], **(context or {})},
    )


@transaction.atomic
def citizen_register(*, actor: Actor, id_number: str, name: str, phone: str, region: Region, scheme: str) -> Citizen:
    identity = _validated_identity(id_number)
    _check_scheme(scheme)
    name = _validated_name(name)
    if find_citizen_id_by_id_number(identity.value) is not None:
        raise citizen_exists_error()
    values = citizen_values(identity=identity, name=name, phone=phone, scheme=scheme, ciphers=CitizenCiphers())
    citizen = Citizen(region=region, status=CitizenStatus.ACTIVE, **citizen_fields(values))
    try:
        with transaction.atomic():
            citizen.save(force_insert=True)
    except IntegrityError as exc:  # a concurrent registration of the same number
        raise citizen_exists_error() from exc
    audit_record(
        actor=actor,
        action="citizen.register",
        object_type="citizen",
        object_id=citizen.pk,
        region_code=region.code,
        after=citizen_snapshot(citizen),
    )
    return citizen


@transaction.atomic
def citizen_viewed(*, actor: Actor, citizen: Citizen) -> None:
    """Record that a person opened a citizen's page: changes nothing, but who looked at whose
    personal data, and from where, is an access record the auditors read (PIPL)."""
    audit_record(
        actor=actor, action="citizen.view", object_type="citizen", object_id=citizen.pk, region_code=citizen.region_id
    )


@transaction.atomic
def citizen_update(*, actor: Actor, citizen: Citizen, name: str, phone: str, scheme: str) -> Citizen:
    citizen = Citizen.objects.select_for_update(no_key=True).get(pk=citizen.pk)
    before = citizen_snapshot(citizen)
    old_name, old_phone = citizen.name, citizen.phone
    name = _validated_name(name)
    _check_scheme(scheme)
    citizen.name = name
    citizen.scheme = scheme
    citizen.phone_enc, citizen.phone_bidx, citizen.phone_masked = phone_values(phone, CitizenCiphers())
    citizen.save(update_fields=["name", "scheme", "phone_enc", "phone_bidx", "phone_masked", "updated_at"])
    after = citizen_snapshot(citizen)
    if after != before or name != old_name or phone.strip() != old_phone:
        audit_record(
            actor=actor,
            action="citizen.update",
            object_type="citizen",
            object_id=citizen.pk,
            region_code=citizen.region_id,
            before=before,
            after=after,
        )
    partner_view = ("name_masked", "scheme")  # what partners see of a citizen changes their objects' version
    if any(before[key] != after[key] for key in partner_view):
        domain_events.record(
            type="citizen.updated",
            aggregate_type="citizen",
            aggregate_id=str(citizen.pk),
            region_code=citizen.region_id,
            data={"citizen_id": citizen.pk, "changed": [key for key in partner_view if before[key] != after[key]]},
        )
    return citizen


@transaction.atomic
def citizen_set_status(*, actor: Actor, citizen: Citizen, status: str, reason: str) -> Citizen:
    """Mark a citizen deceased or moved out (revoking their cards) or active again."""
    if status not in CitizenStatus.values:
        raise DomainError(InsuranceErrorCode.VALIDATION_ERROR, _("Unknown status."), status=400, field="status")
    reason = _required_reason(reason)
    citizen = Citizen.objects.select_for_update(no_key=True).get(pk=citizen.pk)
    if citizen.status == status:
        return citizen
    before = citizen_snapshot(citizen)
    citizen.status = status
    citizen.save(update_fields=["status", "updated_at"])
    audit_record(
        actor=actor,
        action="citizen.status",
        object_type="citizen",
        object_id=citizen.pk,
        region_code=citizen.region_id,
        before=before,
        after=citizen_snapshot(citizen),
        reason=reason,
    )
    if status != CitizenStatus.ACTIVE:
        for certificate in Certificate.objects.select_for_update(no_key=True).filter(
            citizen=citizen, state__in=LIVE_STATES
        ):
            _transition(certificate, "revoke", actor=actor, reason=reason, end_reason=EndReason.CITIZEN_STATUS)
    # After the cards: partners hear `certificate.revoked` first, then what is left ends.
    domain_events.record(
        type="citizen.status",
        aggregate_type="citizen",
        aggregate_id=str(citizen.pk),
        region_code=citizen.region_id,
        data={"citizen_id": citizen.pk, "status": status, "actor": actor.label},
    )
    return citizen


# --- E-cards ----------------------------------------------------------------


def _required_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DomainError(InsuranceErrorCode.REASON_REQUIRED, _("A reason is required."), status=400, field="reason")
    if len(reason) > 128:
        raise DomainError(
            InsuranceErrorCode.VALIDATION_ERROR, _("A reason is at most 128 characters."), status=400, field="reason"
        )
    return reason


def _certificate_exists() -> DomainError:
    return DomainError(
        InsuranceErrorCode.CERTIFICATE_EXISTS, _("This citizen already has an e-card that is not revoked or expired.")
    )


def new_certificate_number(region_code: str) -> str:
    return f"EC{region_code}{secrets.randbelow(10**16):016d}"


def _log(certificate: Certificate, action: str, from_state: str, actor: Actor, reason: str, at) -> None:
    CertificateTransition.objects.create(
        certificate=certificate,
        action=action,
        from_state=from_state,
        to_state=certificate.state,
        actor_label=actor.label,
        reason=reason,
        at=at,
    )


def _emit(
    event_type: str,
    certificate: Certificate,
    *,
    cause: str = "",
    previous_number: str | None = None,
    actor: Actor | None = None,
) -> None:
    data = {
        "certificate_id": certificate.pk,
        "citizen_id": certificate.citizen_id,
        "certificate": certificate_snapshot(certificate),
        "cause": cause,
        "actor": actor.label if actor else "",
    }
    if previous_number is not None:
        data["previous_number"] = previous_number
    domain_events.record(
        type=event_type,
        aggregate_type="certificate",
        aggregate_id=str(certificate.pk),
        region_code=certificate.citizen.region_id,
        data=data,
    )


def _transition(
    certificate: Certificate, action: str, *, actor: Actor, reason: str, end_reason: str = "", cause: str = ""
) -> Certificate:
    """Apply a simple transition to a row already locked by the caller."""
    table = _TRANSITIONS[action]
    if certificate.state not in table:
        raise InvalidTransition(str(_("e-card")), certificate.get_state_display(), action)
    now = timezone.now()
    before = certificate_snapshot(certificate)
    from_state = certificate.state
    certificate.state = table[from_state]
    fields = ["state"]
    if action == "activate":
        certificate.activated_at = now
        fields.append("activated_at")
    if certificate.state in (CertificateState.REVOKED, CertificateState.EXPIRED):
        certificate.ended_at = now
        certificate.end_reason = end_reason or (EndReason.EXPIRED if action == "expire" else EndReason.REVOKED)
        fields += ["ended_at", "end_reason"]
    certificate.save(update_fields=fields)
    _log(certificate, action, from_state, actor, reason, now)
    audit_record(
        actor=actor,
        action=f"certificate.{action}",
        object_type="certificate",
        object_id=certificate.number,
        region_code=certificate.citizen.region_id,
        before=before,
        after=certificate_snapshot(certificate),
        reason=reason,
    )
    event_type = {
        "activate": "certificate.activated",
        "suspend": "certificate.suspended",
        "reinstate": "certificate.reinstated",
        "revoke": "certificate.revoked",
        "expire": "certificate.expired",
    }[action]
    _emit(event_type, certificate, cause=cause or (end_reason or ""), actor=actor)
    return certificate


def _locked(certificate: Certificate) -> Certificate:
    """The card and its citizen, locked citizen first: the order of every other service."""
    Citizen.objects.select_for_update(no_key=True).only("pk").get(pk=certificate.citizen_id)
    return Certificate.objects.select_for_update(no_key=True).select_related("citizen").get(pk=certificate.pk)


@transaction.atomic
def certificate_issue(*, actor: Actor, citizen: Citizen, reason: str) -> Certificate:
    reason = _required_reason(reason)
    citizen = Citizen.objects.select_for_update(no_key=True).get(pk=citizen.pk)
    if citizen.status != CitizenStatus.ACTIVE:
        raise DomainError(InsuranceErrorCode.CITIZEN_NOT_ACTIVE, _("Cards are issued only to active citizens."))
    if Certificate.objects.filter(citizen=citizen, state__in=LIVE_STATES).exists():
        raise _certificate_exists()
    now = timezone.now()
    certificate = Certificate(
        number=new_certificate_number(citizen.region_id),
        citizen=citizen,
        state=CertificateState.PENDING_ACTIVATION,
        issued_at=now,
        expires_at=now + CERTIFICATE_VALIDITY,
    )
    try:
        with transaction.atomic():
            certificate.save(force_insert=True)
    except IntegrityError as exc:  # the partial unique constraint: a concurrent issuance won
        raise _certificate_exists() from exc
    _log(certificate, "issue", "", actor, reason, now)
    audit_record(
        actor=actor,
        action="certificate.issue",
        object_type="certificate",
        object_id=certificate.number,
        region_code=citizen.region_id,
        after=certificate_snapshot(certificate),
        reason=reason,
    )
    return certificate


@transaction.atomic
def certificate_activate(*, actor: Actor, certificate: Certificate, cause: str = "") -> Certificate:
    """pending_activation -> active; `cause` is "linkage" or "family_binding" (partners' rules differ)."""
    return _transition(_locked(certificate), "activate", actor=actor, reason="", cause=cause)


@transaction.atomic
def certificate_suspend(*, actor: Actor, certificate: Certificate, reason: str) -> Certificate:
    return _transition(_locked(certificate), "suspend", actor=actor, reason=_required_reason(reason))


@transaction.atomic
def certificate_reinstate(*, actor: Actor, certificate: Certificate, reason: str) -> Certificate:
    return _transition(_locked(certificate), "reinstate", actor=actor, reason=_required_reason(reason))


@transaction.atomic
def certificate_revoke(*, actor: Actor, certificate: Certificate, reason: str) -> Certificate:
    return _transition(_locked(certificate), "revoke", actor=actor, reason=_required_reason(reason))


@transaction.atomic
def certificate_expire(*, actor: Actor, certificate: Certificate) -> Certificate:
    return _transition(_locked(certificate), "expire", actor=actor, reason="validity ended")


@transaction.atomic
def certificate_reissue(*, actor: Actor, certificate: Certificate, reason: str) -> Certificate:
    """End the old card and issue a new one that takes over its linkages and bindings.

    The new card is `suspended` if the old one was, `active` otherwise
    (an expired card's replacement is active).
    """
    reason = _required_reason(reason)
    old = _locked(certificate)
    if old.state not in _TRANSITIONS["reissue"]:
        raise InvalidTransition(str(_("e-card")), old.get_state_display(), "reissue")
    citizen = Citizen.objects.select_for_update(no_key=True).get(pk=old.citizen_id)
    if citizen.status != CitizenStatus.ACTIVE:
        raise DomainError(InsuranceErrorCode.CITIZEN_NOT_ACTIVE, _("Cards are issued only to active citizens."))
    if Certificate.objects.filter(previous=old).exists():
        raise DomainError(InsuranceErrorCode.INVALID_STATE, _("This e-card has already been reissued."))
    now = timezone.now()
    before = certificate_snapshot(old)
    from_state = old.state
    new_state = CertificateState.SUSPENDED if from_state == CertificateState.SUSPENDED else CertificateState.ACTIVE
    if from_state != CertificateState.EXPIRED:
        old.state = CertificateState.REVOKED
        old.ended_at = now
        old.end_reason = EndReason.REISSUED
        old.save(update_fields=["state", "ended_at", "end_reason"])
        _log(old, "reissue", from_state, actor, reason, now)
    new = Certificate(
        number=new_certificate_number(citizen.region_id),
        citizen=citizen,
        state=new_state,
        issued_at=now,
        activated_at=now,
        expires_at=now + CERTIFICATE_VALIDITY,
        previous=old,
    )
    try:
        with transaction.atomic():
            new.save(force_insert=True)
    except IntegrityError as exc:
        raise _certificate_exists() from exc
    _log(new, "issue", "", actor, reason, now)
    audit_record(
        actor=actor,
        action="certificate.reissue",
        object_type="certificate",
        object_id=old.number,
        region_code=citizen.region_id,
        before=before,
        after={"old": certificate_snapshot(old), "new": certificate_snapshot(new)},
        reason=reason,
    )
    _emit("certificate.reissued", new, previous_number=old.number, actor=actor)
    return new


def certificates_expire_due(batch: int = 500) -> int:
    """Expire active and suspended cards past their expiry time (each in its own transaction)."""
    actor = Actor.system("expiry")
    done = 0
    ids = list(
        Certificate.objects.filter(
            state__in=[CertificateState.ACTIVE, CertificateState.SUSPENDED], expires_at__lte=timezone.now()
        ).values_list("id", flat=True)[:batch]
    )
    for certificate_id in ids:
        try:
            certificate_expire(actor=actor, certificate=Certificate(pk=certificate_id))
            done += 1
        except DomainError:
            continue  # changed meanwhile
    return done
