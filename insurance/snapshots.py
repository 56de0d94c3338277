"""Masked snapshots of citizens and e-cards: what the audit log and partners see
of them (never an identity number, name or phone in the clear)."""

from insurance.models import Certificate, Citizen


def citizen_snapshot(citizen: Citizen) -> dict:
    return {
        "region_code": citizen.region_id,
        "id_number_masked": citizen.id_number_masked,
        "name_masked": citizen.name_masked,
        "phone_masked": citizen.phone_masked,
        "scheme": citizen.scheme,
        "status": citizen.status,
    }


def certificate_snapshot(certificate: Certificate) -> dict:
    return {
        "number": certificate.number,
        "state": certificate.state,
        "expires_at": certificate.expires_at.isoformat(),
        "end_reason": certificate.end_reason,
    }
