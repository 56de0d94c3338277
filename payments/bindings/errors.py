"""The codes of the family bindings' domain errors (`portal.errors.DomainError`).

The values are a stable contract: the API's problem+json, the partners and the
tests read them. A new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class BindingErrorCode(StrEnum):
    # Input the serializer or form should have caught (400).
    VALIDATION_ERROR = "validation_error"
    # A suspended partner, a read-only auditor (403); a linkage or binding out of reach (404).
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    # The holder, the beneficiary and their e-cards.
    LINKAGE_INACTIVE = "linkage_inactive"
    IDENTITY_MISMATCH = "identity_mismatch"
    CERTIFICATE_UNAVAILABLE = "certificate_unavailable"
    # The open bindings of a holder.
    BINDING_EXISTS = "binding_exists"
    BINDING_LIMIT_REACHED = "binding_limit_reached"
    # Approve or reject a binding that is no longer pending (raised as `InvalidTransition`).
    INVALID_STATE = "invalid_state"
