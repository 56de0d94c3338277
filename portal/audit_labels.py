"""Readable, translated names of the stored codes: the audit log's actions, object
types, actor types and the reasons and actor names the system gives, the partner
events' types and the delivery monitor's fixed error texts.

The database stores stable codes (`certificate.revoke`, `family_binding`,
`bulk import`); screens and exports show these labels in the reader's language,
beside the code where an auditor needs it (docs/glossary.md). A code without a
label (a new action, a reason a person typed) is shown as stored, so nothing is
ever hidden.
"""

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

ACTION_LABELS: dict[str, Promise] = {
    "account.adjust": _("Personal account adjusted"),
    "demo.seeded": _("Demo data loaded"),
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
    "partner.pause_deliveries": _("Partner deliveries paused"),
    "partner.reactivate": _("Partner reactivated"),
    "partner.resume_deliveries": _("Partner deliveries resumed"),
    "partner.set_rate_limit": _("Partner rate limit changed"),
    "partner.set_webhook_url": _("Partner webhook URL changed"),
    "partner.suspend": _("Partner suspended"),
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


OBJECT_TYPE_LABELS: dict[str, Promise] = {
    "citizen": _("Citizen"),
    "certificate": _("E-card"),
    "linkage": _("Wallet linkage"),
    "family_binding": _("Family binding"),
    "settlement": _("Settlement"),
    "premium": _("Premium payment"),
    "personal_account": _("Personal account"),
    "risk_flag": _("Risk flag"),
    "facility": _("Facility"),
    "reimbursement_policy": _("Reimbursement policy"),
    "service_item": _("Service"),
    "user": _("Staff account"),
    "partner": _("Partner"),
    "partner_key": _("Partner key"),
    "portal_key": _("Portal signing key"),
    "outbox_event": _("Partner event"),
    "export": _("Export"),
    "demo": _("Demo data"),
}

ACTOR_TYPE_LABELS: dict[str, Promise] = {
    "user": pgettext_lazy("actor type", "Staff"),
    "partner": pgettext_lazy("actor type", "Partner"),
    "system": pgettext_lazy("actor type", "System"),
}

# The names the system's own jobs record as their actor (Actor.system(...)).
SYSTEM_ACTOR_LABELS: dict[str, Promise] = {
    "portal": _("The portal"),
    "expiry": _("E-card expiry job"),
    "settlement expiry": _("Settlement expiry job"),
    "risk scan": _("Risk scan"),
    "binding-timeout": _("Family binding timeout job"),
    "import_citizens": _("Citizen import (command line)"),
    "create_partner": _("Partner set-up (command line)"),
    "rotate_portal_key": _("Signing key rotation (command line)"),
    "seed_demo": _("Demo data"),
    "tests": _("Automated tests"),
}

# The reasons the services give themselves; a reason a person typed is shown as typed.
SYSTEM_REASON_LABELS: dict[str, Promise] = {
    "bulk import": _("Bulk import"),
    "already registered": _("Identity number already registered"),
    "validity ended": _("Validity ended"),
}

# The partner events' types (docs/partner-guide.md): what the delivery monitor lists.
EVENT_TYPE_LABELS: dict[str, Promise] = {
    "certificate.activated": _("E-card activated"),
    "certificate.suspended": _("E-card suspended"),
    "certificate.reinstated": _("E-card reinstated"),
    "certificate.revoked": _("E-card revoked"),
    "certificate.expired": _("E-card expired"),
    "certificate.reissued": _("E-card reissued"),
    "citizen.updated": _("Citizen updated"),
    "citizen.status": _("Citizen status changed"),
    "citizen.account_balance_set": _("Personal account balance set"),
    "linkage.created": _("Wallet linked"),
    "linkage.unlinked": _("Wallet unlinked"),
    "family_binding.activated": _("Family binding approved"),
    "family_binding.rejected": _("Family binding rejected"),
    "family_binding.revoked": _("Family binding ended"),
    "settlement.paid": _("Settlement paid"),
    "settlement.cancelled": _("Settlement cancelled"),
    "settlement.expired": _("Settlement expired"),
    "settlement.refunded": _("Settlement refunded"),
}

# The delivery worker's fixed error texts (payments/delivery/services.py); "HTTP 500" needs none.
DELIVERY_ERROR_LABELS: dict[str, Promise] = {
    "connection failed": _("Connection failed"),
    "timeout": _("No answer in time"),
}


def _label(labels: dict[str, Promise], code: str) -> str:
    label = labels.get(code)
    return str(label) if label is not None else code


def action_label(code: str) -> str:
    return _label(ACTION_LABELS, code)


def object_type_label(code: str) -> str:
    return _label(OBJECT_TYPE_LABELS, code)


def actor_label(actor_type: str, label: str) -> str:
    """Who acted, in words: a system job by its name, a person or partner by the name they have."""
    if actor_type == "system":
        return _label(SYSTEM_ACTOR_LABELS, label)
    return label


def actor_type_label(code: str) -> str:
    return _label(ACTOR_TYPE_LABELS, code)


def reason_label(reason: str) -> str:
    return _label(SYSTEM_REASON_LABELS, reason)


def event_type_label(code: str) -> str:
    return _label(EVENT_TYPE_LABELS, code)


def delivery_error_label(error: str) -> str:
    return _label(DELIVERY_ERROR_LABELS, error)


def actions_matching(text: str) -> list[str]:
    """The action codes whose label, in the active language, contains `text` (暂停 → certificate.suspend)."""
    needle = text.casefold()
    return sorted(code for code, label in ACTION_LABELS.items() if needle in str(label).casefold())
