"""Premiums: a resident's yearly contribution paid through a wallet partner
(PARTNER_API.md `POST /premiums`). The payment row is the enrolment for that
year being paid: one per citizen and year, enforced by the database."""

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from insurance.catalogue import policy_in_force, shanghai_today
from insurance.models import Citizen, Scheme
from payments.models import Partner, PremiumPayment
from payments.premiums.errors import PremiumErrorCode
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError


def premium_years() -> tuple[int, int]:
    """The years a premium may be paid for: the current one and the next (Asia/Shanghai)."""
    year = shanghai_today().year
    return year, year + 1


def enrolment_paid(citizen: Citizen, year: int) -> bool:
    return PremiumPayment.objects.filter(citizen=citizen, year=year).exists()


@transaction.atomic
def premium_pay(
    *, actor: Actor, partner: Partner, citizen: Citizen, year: int, amount_fen: int, partner_transaction_id: str
) -> PremiumPayment:
    """Record a resident's premium for the current or the next year.

    The caller has identified the citizen (422 `identity_mismatch` comes first). Then, in
    the contract's order: 409 `not_resident_scheme`, 400 `validation_error` (the year),
    409 `premium_already_paid`, 422 `amount_mismatch` (the policy's `premium_fen`).
    """
    # The citizen's row serialises concurrent payments for one person.
    citizen = Citizen.objects.select_for_update(no_key=True).get(pk=citizen.pk)
    if citizen.scheme != Scheme.RESIDENT:
        raise DomainError(PremiumErrorCode.NOT_RESIDENT_SCHEME, _("Only the resident scheme has a premium."))
    if year not in premium_years():
        raise DomainError(
            PremiumErrorCode.VALIDATION_ERROR,
            _("A premium is paid for the current or the next year."),
            status=400,
            field="year",
        )
    if enrolment_paid(citizen, year):
        raise DomainError(PremiumErrorCode.PREMIUM_ALREADY_PAID, _("The premium for this year is already paid."))
    policy = policy_in_force(citizen.region_id, citizen.scheme, year)
    if policy is None or policy.premium_fen is None:
        raise DomainError(
            PremiumErrorCode.POLICY_UNAVAILABLE, _("No policy with a premium is published for this year.")
        )
    if amount_fen != policy.premium_fen:
        raise DomainError(
            PremiumErrorCode.AMOUNT_MISMATCH,
            _("The amount differs from the year's premium."),
            status=422,
            premium_fen=policy.premium_fen,
        )
    premium = PremiumPayment.objects.create(
        partner=partner,
        citizen=citizen,
        policy=policy,
        year=year,
        amount_fen=amount_fen,
        partner_transaction_id=partner_transaction_id,
        created_at=timezone.now(),
    )
    audit_record(
        actor=actor,
        action="premium.pay",
        object_type="premium",
        object_id=premium.public_id,
        region_code=citizen.region_id,
        after={
            "id": premium.public_id,
            "partner": partner.code,
            "year": year,
            "amount_fen": amount_fen,
            "policy_version": policy.version,
            "partner_transaction_id": partner_transaction_id,
        },
    )
    return premium


def premiums_of_partner(partner: Partner) -> QuerySet[PremiumPayment]:
    return PremiumPayment.objects.filter(partner=partner).select_related("citizen")
