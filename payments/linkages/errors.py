"""The codes of the wallet linkages' domain errors (`portal.errors.DomainError`).

The values are a stable contract: the API's problem+json, the partners and the
tests read them. A new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class LinkageErrorCode(StrEnum):
    # Input the serializer or form should have caught (400).
    VALIDATION_ERROR = "validation_error"
    # The partner is suspended (403).
    FORBIDDEN = "forbidden"
    # The identity number and match no insured citizen (422).
    IDENTITY_MISMATCH = "identity_mismatch"
    # The citizen and their e-card (409).
    CERTIFICATE_UNAVAILABLE = "certificate_unavailable"
    LINKAGE_EXISTS = "linkage_exists"
