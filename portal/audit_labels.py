"""Readable, translated names of the audit log's action codes.

The log stores stable codes (`certificate.revoke`); screens and exports show
these labels beside them. A code without a label (a new action) is shown as
stored, so nothing is ever hidden.
"""

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

ACTION_LABELS: dict[str, Promise] = {
    "account.adjust": _("Personal account adjusted"),
    "certificate.activate": _("E-card activated"),
    "certificate.expire": _("E-card expired"),
    "certificate.issue": _("E-card issued"),
    "certificate.reinstate": _("E-card reinstated"),
    "certificate.reissue": _("E-card reissued"),
    "certificate.revoke": _("E-card revoked"),
    "certificate.suspend": _("E-card suspended"),
    "citizen.import_batch": _("Citizens imported (one batch)"),
    "citizen.register": _("Citizen registered"),
    "citizen.register_refused": _("Registration refused: identity number already registered"),
    "citizen.status": _("Citizen status changed"),
    "citizen.update": _("Citizen updated"),
    "citizen.view": _("Citizen's page opened"),
    "citizen_import.upload": _("Citizen file uploaded for import"),
    "facility.created": _("Facility created"),
    "facility.updated": _("Facility updated"),
    "family_binding.approve": _("Family binding approved"),
    "family_binding.create": _("Family binding requested"),
    "family_binding.reject": _("Family binding rejected"),
    "family_binding.revoke": _("Family binding ended"),
    "linkage.create": _("Wallet linked"),
    "linkage.unlink": _("Wallet unlinked"),
    "list.export": _("List exported"),
    "outbox_event.replay": _("Partner delivery replayed"),
    "partner.create": _("Partner created"),
    "partner_key.add": _("Partner key added"),
    "partner_key.revoke": _("Partner key revoked"),
    "policy.version_created": _("Reimbursement policy version created"),
    "portal_key.activate": _("Portal signing key activated"),
    "portal_key.create": _("Portal signing key created"),
    "portal_key.retire": _("Portal signing key retired"),
    "premium.pay": _("Premium paid"),
    "risk_flag.confirm": _("Risk flag confirmed"),
    "risk_flag.dismiss": _("Risk flag dismissed"),
    "risk_flag.raise": _("Risk flag raised"),
    "service.created": _("Insured service created"),
    "service.updated": _("Insured service updated"),
    "settlement.cancel": _("Settlement cancelled"),
    "settlement.confirm": _("Settlement paid"),
    "settlement.create": _("Settlement created"),
    "settlement.expire": _("Settlement expired"),
    "settlement.refund": _("Settlement refunded"),
    "staff.create": _("Staff account created"),
    "staff.deactivate": _("Staff account deactivated"),
    "staff.lock": _("Staff account locked after failed sign-ins"),
    "staff.password_change": _("Staff member changed their password"),
    "staff.password_reset": _("Staff password reset by an administrator"),
    "staff.reactivate": _("Staff account reactivated"),
    "staff.unlock": _("Staff account unlocked"),
}


def action_label(code: str) -> str:
    label = ACTION_LABELS.get(code)
    return str(label) if label is not None else code
