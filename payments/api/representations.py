"""Objects as partners see them (PARTNER_API.md "Objects")."""

from datetime import datetime
from zoneinfo import ZoneInfo

from insurance.models import Certificate, Citizen
from payments.models import WalletLinkage

SHANGHAI = ZoneInfo("Asia/Shanghai")


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(SHANGHAI).isoformat(timespec="seconds")


def citizen_repr(citizen: Citizen) -> dict:
    return {
        "name_masked": citizen.name_masked,
        "id_number_masked": citizen.id_number_masked,
        "region_code": citizen.region_id,
        "scheme": citizen.scheme,
    }


def certificate_repr(certificate: Certificate) -> dict:
    return {"number": certificate.number, "state": certificate.state, "expires_at": rfc3339(certificate.expires_at)}


def linkage_repr(linkage: WalletLinkage) -> dict:
    return {
        "id": linkage.public_id,
        "partner_user_ref": linkage.partner_user_ref,
        "state": linkage.state,
        "end_reason": linkage.end_reason or None,
        "certificate": certificate_repr(linkage.certificate),
        "citizen": citizen_repr(linkage.citizen),
        "created_at": rfc3339(linkage.created_at),
        "ended_at": rfc3339(linkage.ended_at),
        "version": linkage.version,
    }


def family_binding_repr(binding) -> dict:
    """PARTNER_API.md "Family binding". The certificate is the beneficiary's current
    card: bindings move with a reissued card, ids unchanged."""
    beneficiary = binding.beneficiary
    card = beneficiary.current_certificate()
    return {
        "id": binding.public_id,
        "holder_linkage_id": binding.holder_linkage.public_id,
        "beneficiary": citizen_repr(beneficiary),
        "beneficiary_certificate": certificate_repr(card) if card is not None else None,
        "relationship": binding.relationship,
        "consent_reference": binding.consent_reference,
        "state": binding.state,
        "end_reason": binding.end_reason or None,
        "created_at": rfc3339(binding.created_at),
        "ended_at": rfc3339(binding.ended_at),
        "version": binding.version,
    }


def _lines(settlement) -> list:
    """`settlement.lines.all()`, from what was prefetched or given if anything was: a settlement just
    created or locked (payments/settlements/store.py) has its lines in memory."""
    given = getattr(settlement, "_prefetched_objects_cache", {}).get("lines")
    return given if given is not None else settlement.lines.all()


def settlement_repr(settlement) -> dict:
    """PARTNER_API.md "Settlement". Reads `certificate`, `family_binding`, `facility`, `policy`
    and `lines` (select them with payments.settlements.selectors.settlements_of_partner)."""
    policy = settlement.policy
    return {
        "id": settlement.public_id,
        "state": settlement.state,
        "certificate_number": settlement.certificate.number,
        "family_binding_id": settlement.family_binding.public_id if settlement.family_binding_id else None,
        "facility_code": settlement.facility.code,
        "policy": {
            "region_code": policy.region_id,
            "scheme": policy.scheme,
            "year": policy.year,
            "version": policy.version,
        },
        "lines": [
            {
                "service_code": line.service_code,
                "quantity": line.quantity,
                "unit_price_fen": line.unit_price_fen,
                "line_total_fen": line.line_total_fen,
                "eligible_fen": line.eligible_fen,
            }
            for line in _lines(settlement)
        ],
        "total_fen": settlement.total_fen,
        "eligible_fen": settlement.eligible_fen,
        "deductible_fen": settlement.deductible_fen,
        "fund_fen": settlement.fund_fen,
        "account_fen": settlement.account_fen,
        "self_pay_fen": settlement.self_pay_fen,
        "use_personal_account": settlement.use_personal_account,
        "partner_transaction_id": settlement.partner_transaction_id,
        "expires_at": rfc3339(settlement.expires_at),
        "created_at": rfc3339(settlement.created_at),
        "version": settlement.version,
    }


def premium_repr(premium) -> dict:
    """PARTNER_API.md "Premium"."""
    return {
        "id": premium.public_id,
        "state": premium.state,
        "year": premium.year,
        "amount_fen": premium.amount_fen,
        "partner_transaction_id": premium.partner_transaction_id,
        "citizen": citizen_repr(premium.citizen),
        "created_at": rfc3339(premium.created_at),
        "version": premium.version,
    }
