"""The codes of the webhook deliveries' domain errors (`portal.errors.DomainError`).

The values are a stable contract: the API's problem+json, the partners and the
tests read them. A new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class DeliveryErrorCode(StrEnum):
    # Replaying an event that is not dead (409).
    INVALID_STATE = "invalid_state"
