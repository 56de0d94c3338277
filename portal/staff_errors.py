"""The codes of staff management's domain errors (`portal.errors.DomainError`).

The values are a stable contract: the screens and the tests read them. A new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class StaffErrorCode(StrEnum):
    # Input the form should have caught (400).
    VALIDATION_ERROR = "validation_error"
    REASON_REQUIRED = "reason_required"
    WEAK_PASSWORD = "weak_password"  # noqa: S105 (an error code, not a secret)
    # A role, a region or an account the manager may not touch (403, 404).
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    # Uniqueness (409).
    USERNAME_TAKEN = "username_taken"
    # A state the action does not apply to (409).
    NOT_LOCKED = "not_locked"
    NOT_DEACTIVATED = "not_deactivated"
