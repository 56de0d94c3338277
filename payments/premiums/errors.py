"""The codes of the premiums' domain errors (`portal.errors.DomainError`).

The values are a stable contract: the API's problem+json, the partners and the
tests read them. A new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class PremiumErrorCode(StrEnum):
    # Input the serializer should have caught (400).
    VALIDATION_ERROR = "validation_error"
    # The citizen, the year and its policy (409).
    NOT_RESIDENT_SCHEME = "not_resident_scheme"
    PREMIUM_ALREADY_PAID = "premium_already_paid"
    POLICY_UNAVAILABLE = "policy_unavailable"
    # The amount is not the year's premium (422).
    AMOUNT_MISMATCH = "amount_mismatch"
