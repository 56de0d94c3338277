"""The codes of the risk flags' domain errors (`portal.errors.DomainError`).

The values are a stable contract: the API's problem+json, the partners and the
tests read them. A new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class RiskErrorCode(StrEnum):
    # The decision and its note (400).
    VALIDATION_ERROR = "validation_error"
    # Deciding a flag that is already decided (409).
    INVALID_STATE = "invalid_state"
