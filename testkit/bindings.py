"""Set-up for the family-binding tests: partners, a linked holder, beneficiaries."""

import datetime as dt
import json

from insurance import services as insurance_services
from payments.bindings.services import family_binding_create
from payments.linkages.services import linkage_create
from payments.models import FamilyBinding, OutboxEvent, Partner, PartnerKind, WalletLinkage
from portal.actors import Actor
from testkit.citizens import new_id_number

SYSTEM = Actor.system("tests")
BINDING_KEYS = {
    "id",
    "holder_linkage_id",
    "beneficiary",
    "beneficiary_certificate",
    "relationship",
    "consent_reference",
    "state",
    "end_reason",
    "created_at",
    "ended_at",
    "version",
}


def make_wallet(code: str, kind: str = PartnerKind.WALLET) -> Partner:
    return Partner.objects.create(code=code, name=code, kind=kind, webhook_url="http://127.0.0.1:9/hook")


def register(
    regions, region_code: str = "310000", *, name: str = "张三明", card: bool = True, birth: dt.date | None = None
):
    """A citizen with the identity number kept for the test (it is stored encrypted)."""
    id_number = new_id_number(region_code, birth)
    citizen = insurance_services.citizen_register(
        actor=SYSTEM,
        id_number=id_number,
        name=name,
        phone="13800000000",
        region=regions[region_code],
        scheme="resident",
    )
    if card:
        insurance_services.certificate_issue(actor=SYSTEM, citizen=citizen, reason="test")
    return citizen, id_number


def link(partner: Partner, citizen, ref: str | None = None) -> WalletLinkage:
    return linkage_create(
        actor=SYSTEM, partner=partner, citizen=citizen, partner_user_ref=ref or f"{partner.code}-{citizen.pk}"
    )


def bind(
    partner: Partner, linkage: WalletLinkage, id_number: str, name: str = "李四", relationship: str = "parent"
) -> FamilyBinding:
    return family_binding_create(
        actor=Actor.for_partner(partner.code),
        partner=partner,
        holder_linkage=linkage,
        beneficiary_id_number=id_number,
        beneficiary_name=name,
        relationship=relationship,
        consent_reference="consent-1",
    )


def last_event_id() -> int:
    return OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def events(partner: Partner, after: int = 0) -> list[dict]:
    return [json.loads(e.body) for e in OutboxEvent.objects.filter(partner=partner, id__gt=after).order_by("id")]


def types(partner: Partner, after: int = 0) -> list[str]:
    return [e["type"] for e in events(partner, after)]
