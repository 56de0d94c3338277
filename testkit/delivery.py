"""A partner's linked card, for the delivery tests."""

from payments.linkages.services import linkage_create
from payments.models import Partner
from portal.actors import Actor


def linked_card(make_citizen, partner: Partner):
    citizen = make_citizen(with_card=True)
    linkage = linkage_create(
        actor=Actor.for_partner(partner.code),
        partner=partner,
        citizen=citizen,
        partner_user_ref="openid-1",
        verification_reference="face-1",
    )
    return linkage.certificate
