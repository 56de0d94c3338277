"""The codes of the partners' domain errors (`portal.errors.DomainError`).

The values are a stable contract: the API's problem+json, the partners and the
tests read them. A new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class PartnerErrorCode(StrEnum):
    # Input a form should have caught (400): the name, code, kind, webhook URL, key, rate limit.
    VALIDATION_ERROR = "validation_error"
    # Uniqueness (409).
    PARTNER_EXISTS = "partner_exists"
    KEY_EXISTS = "key_exists"
    # Already revoked, suspended, active, paused or not paused (409).
    INVALID_STATE = "invalid_state"
