"""The codes of the settlements' domain errors (`portal.errors.DomainError`).

The values are a stable contract: the API's problem+json, the partners and the
tests read them. A new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class SettlementErrorCode(StrEnum):
    # Input the serializer should have caught (400); another partner's settlement (404).
    VALIDATION_ERROR = "validation_error"
    NOT_FOUND = "not_found"
    # The QR token and what it presents.
    TOKEN_USED = "token_used"  # noqa: S105 (an error code, not a secret)
    LINKAGE_INACTIVE = "linkage_inactive"
    BINDING_INACTIVE = "binding_inactive"
    CERTIFICATE_NOT_ACTIVE = "certificate_not_active"
    # The bill against the catalogue and the policy.
    UNKNOWN_FACILITY = "unknown_facility"
    UNKNOWN_SERVICE = "unknown_service"
    PRICE_ABOVE_MAXIMUM = "price_above_maximum"
    POLICY_UNAVAILABLE = "policy_unavailable"
    # Confirm, cancel, expire, refund.
    SETTLEMENT_EXPIRED = "settlement_expired"
    AMOUNT_MISMATCH = "amount_mismatch"
    INVALID_STATE = "invalid_state"
