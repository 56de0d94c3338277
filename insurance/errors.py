"""The codes of insurance's domain errors (`portal.errors.DomainError`).

The values are a stable contract: the API's problem+json, the partners and the
tests read them. A new refusal adds a member; an existing value never changes.
"""

from enum import StrEnum


class InsuranceErrorCode(StrEnum):
    # Input a form or serializer should have caught (400).
    VALIDATION_ERROR = "validation_error"
    INVALID_ID_NUMBER = "invalid_id_number"
    REASON_REQUIRED = "reason_required"
    # Citizens and e-cards.
    CITIZEN_EXISTS = "citizen_exists"
    CITIZEN_NOT_ACTIVE = "citizen_not_active"
    CERTIFICATE_EXISTS = "certificate_exists"
    INVALID_STATE = "invalid_state"
    # Citizen imports.
    REGION_MISMATCH = "region_mismatch"
    # Catalogue, facilities and reimbursement.
    SERVICE_EXISTS = "service_exists"
    FACILITY_EXISTS = "facility_exists"
    PRICE_ABOVE_MAXIMUM = "price_above_maximum"
