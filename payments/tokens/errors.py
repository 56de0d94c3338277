"""The codes of the QR tokens' domain errors (`portal.errors.DomainError`).

The values are a stable contract: the API's problem+json, the partners and the
tests read them. A new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class TokenErrorCode(StrEnum):
    # Issuing a token: the linkage, the family binding and the e-card behind it.
    NOT_FOUND = "not_found"
    LINKAGE_INACTIVE = "linkage_inactive"
    BINDING_INACTIVE = "binding_inactive"
    CERTIFICATE_NOT_ACTIVE = "certificate_not_active"
    # Reading a token (422).
    INVALID_TOKEN = "invalid_token"  # noqa: S105 (an error code, not a secret)
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 (an error code, not a secret)
