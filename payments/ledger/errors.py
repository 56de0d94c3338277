"""The codes of the personal accounts' domain errors (`portal.errors.DomainError`).

The values are a stable contract: a new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class LedgerErrorCode(StrEnum):
    VALIDATION_ERROR = "validation_error"
    # A balance set below what pending settlements hold.
    ACCOUNT_HELD = "account_held"
