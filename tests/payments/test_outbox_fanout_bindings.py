"""PARTNER_API.md "What a card's change does", for family bindings: a card change is heard
through the bindings whose beneficiary holds the card (object: the Family binding),
and a revocation or a citizen's status ends the bindings on either side."""

import re

import pytest

from insurance import services
from payments.api.representations import family_binding_repr
from payments.bindings import services as bindings
from payments.linkages.services import linkage_unlink
from payments.models import BindingState, FamilyBinding
from portal.actors import Actor
from portal.models import AuditEvent, Role
from testkit.bindings import BINDING_KEYS, SYSTEM, bind, events, last_event_id, link, make_wallet, register, types

pytestmark = pytest.mark.django_db
RFC3339_SHANGHAI = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")


@pytest.fixture
def world(regions, make_user):
    """wechat: the holder's linkage and an ACTIVE binding on the parent's card;
    alipay: the parent's own wallet linkage; other: nothing."""
    wechat, alipay, other = make_wallet("wechat"), make_wallet("alipay"), make_wallet("other")
    holder, _ = register(regions, name="张三明")
    holder_linkage = link(wechat, holder)
    parent, parent_number = register(regions, "220000", name="李四")
    binding = bind(wechat, holder_linkage, parent_number)
    bindings.family_binding_approve(actor=Actor.for_user(make_user(Role.CLERK, ("220000",))), binding=binding)
    parent_linkage = link(alipay, parent)
    binding.refresh_from_db()
    return {
        "wechat": wechat,
        "alipay": alipay,
        "other": other,
        "holder": holder,
        "holder_linkage": holder_linkage,
        "parent": parent,
        "parent_linkage": parent_linkage,
        "binding": binding,
    }


def test_the_binding_representation_is_exactly_the_contracts_object(world):
    obj = family_binding_repr(world["binding"])

    assert set(obj) == BINDING_KEYS
    assert obj["holder_linkage_id"] == world["holder_linkage"].public_id
    assert set(obj["beneficiary"]) == {"name_masked", "id_number_masked", "region_code", "scheme"}
    assert obj["beneficiary"]["name_masked"] == "李*" and obj["beneficiary"]["region_code"] == "220000"
    assert set(obj["beneficiary_certificate"]) == {"number", "state", "expires_at"}
    assert RFC3339_SHANGHAI.match(obj["created_at"]) and obj["ended_at"] is None
    assert (obj["state"], obj["end_reason"], obj["relationship"]) == ("active", None, "parent")


@pytest.mark.parametrize(
    ("change", "event_type"), [("suspend", "certificate.suspended"), ("expire", "certificate.expired")]
)
def test_a_card_change_is_heard_through_the_binding_and_the_linkage_with_a_growing_version(world, change, event_type):
    card = world["parent"].current_certificate()
    start = last_event_id()

    if change == "suspend":
        services.certificate_suspend(actor=SYSTEM, certificate=card, reason="lost phone")
    else:
        services.certificate_expire(actor=SYSTEM, certificate=card)

    [via_binding] = events(world["wechat"], start)
    assert via_binding["type"] == event_type
    obj = via_binding["data"]["object"]
    assert set(obj) == BINDING_KEYS
    assert obj["id"] == world["binding"].public_id
    assert obj["version"] == world["binding"].version + 1
    assert obj["beneficiary_certificate"]["state"] == card.__class__.objects.get(pk=card.pk).state
    assert [e["data"]["object"]["id"] for e in events(world["alipay"], start)] == [world["parent_linkage"].public_id]
    assert types(world["other"], start) == []


def test_reinstatement_is_heard_through_the_binding(world):
    card = world["parent"].current_certificate()
    services.certificate_suspend(actor=SYSTEM, certificate=card, reason="lost phone")
    start = last_event_id()

    services.certificate_reinstate(actor=SYSTEM, certificate=card, reason="found")

    assert types(world["wechat"], start) == ["certificate.reinstated"]
    assert events(world["wechat"], start)[0]["data"]["object"]["beneficiary_certificate"]["state"] == "active"


def test_revoking_the_beneficiarys_card_sends_certificate_revoked_then_family_binding_revoked(world):
    start = last_event_id()

    services.certificate_revoke(actor=SYSTEM, certificate=world["parent"].current_certificate(), reason="fraud")

    wechat = events(world["wechat"], start)
    assert [e["type"] for e in wechat] == ["certificate.revoked", "family_binding.revoked"]
    assert wechat[0]["data"]["object"]["state"] == "active"
    assert wechat[0]["data"]["object"]["beneficiary_certificate"]["state"] == "revoked"
    ended = wechat[1]["data"]["object"]
    assert (ended["state"], ended["end_reason"]) == ("revoked", "certificate_revoked")
    assert ended["version"] == wechat[0]["data"]["object"]["version"] + 1
    assert types(world["alipay"], start) == ["certificate.revoked", "linkage.unlinked"]
    assert AuditEvent.objects.filter(action="family_binding.revoke", object_id=world["binding"].public_id).exists()


def test_a_deceased_beneficiary_ends_pending_and_active_bindings_with_citizen_status(world, regions):
    other_holder, _ = register(regions, name="孙八")
    pending = bind(world["other"], link(world["other"], other_holder), _number_of(world))
    start = last_event_id()

    services.citizen_set_status(actor=SYSTEM, citizen=world["parent"], status="deceased", reason="died")

    for partner, binding in ((world["wechat"], world["binding"]), (world["other"], pending)):
        got = events(partner, start)
        assert [e["type"] for e in got][-2:] == ["certificate.revoked", "family_binding.revoked"]
        assert got[-1]["data"]["object"]["id"] == binding.public_id
        assert got[-1]["data"]["object"]["end_reason"] == "citizen_status"
    assert set(FamilyBinding.objects.values_list("state", flat=True)) == {BindingState.REVOKED}


def _number_of(world) -> str:
    return world["parent"].id_number


def test_revoking_the_holders_card_unlinks_the_holder_and_revokes_the_bindings_made_through_it(world):
    start = last_event_id()

    services.certificate_revoke(actor=SYSTEM, certificate=world["holder"].current_certificate(), reason="fraud")

    wechat = events(world["wechat"], start)
    assert [e["type"] for e in wechat] == ["certificate.revoked", "linkage.unlinked", "family_binding.revoked"]
    assert wechat[2]["data"]["object"]["end_reason"] == "certificate_revoked"
    assert types(world["alipay"], start) == []


def test_a_holder_who_moves_out_loses_the_bindings_with_citizen_status(world):
    start = last_event_id()

    services.citizen_set_status(actor=SYSTEM, citizen=world["holder"], status="moved_out", reason="moved")

    wechat = events(world["wechat"], start)
    assert [e["type"] for e in wechat] == ["certificate.revoked", "linkage.unlinked", "family_binding.revoked"]
    assert wechat[2]["data"]["object"]["end_reason"] == "citizen_status"


def test_unlinking_the_holders_linkage_revokes_its_bindings_with_holder_unlinked(world):
    start = last_event_id()

    linkage_unlink(actor=Actor.for_partner("wechat"), linkage=world["holder_linkage"], reason="citizen_request")

    wechat = events(world["wechat"], start)
    assert [e["type"] for e in wechat] == ["linkage.unlinked", "family_binding.revoked"]
    assert wechat[1]["data"]["object"]["end_reason"] == "holder_unlinked"
    world["binding"].refresh_from_db()
    assert world["binding"].state == BindingState.REVOKED


def test_a_reissued_card_carries_the_binding_which_hears_certificate_reissued_only(world):
    old = world["parent"].current_certificate()
    start = last_event_id()

    new = services.certificate_reissue(actor=SYSTEM, certificate=old, reason="damaged")

    [event] = events(world["wechat"], start)
    assert event["type"] == "certificate.reissued"
    assert event["data"]["previous_number"] == old.number
    obj = event["data"]["object"]
    assert (obj["id"], obj["state"]) == (world["binding"].public_id, "active")
    assert obj["beneficiary_certificate"]["number"] == new.number
    assert obj["beneficiary_certificate"]["state"] == "active"
    assert types(world["alipay"], start) == ["certificate.reissued"]
    world["binding"].refresh_from_db()
    assert world["binding"].state == BindingState.ACTIVE


def test_a_first_linkage_of_the_beneficiary_is_heard_as_certificate_activated_by_a_pending_bindings_partner(regions):
    wechat, alipay = make_wallet("wechat"), make_wallet("alipay")
    holder, _ = register(regions, name="张三明")
    parent, number = register(regions, "220000", name="李四")
    binding = bind(wechat, link(wechat, holder), number)
    start = last_event_id()

    link(alipay, parent)

    assert types(alipay, start) == ["linkage.created"]
    [event] = events(wechat, start)
    assert event["type"] == "certificate.activated"
    assert event["data"]["object"]["id"] == binding.public_id
    assert event["data"]["object"]["beneficiary_certificate"]["state"] == "active"


def test_a_change_of_the_beneficiarys_masked_name_grows_the_version_without_an_event(world):
    start = last_event_id()
    version = world["binding"].version

    services.citizen_update(actor=SYSTEM, citizen=world["parent"], name="王五", phone="", scheme="resident")

    world["binding"].refresh_from_db()
    assert world["binding"].version == version + 1
    assert types(world["wechat"], start) == []


def test_a_deceased_citizen_whose_card_had_expired_is_unlinked_with_citizen_status(make_citizen, system_actor):
    """An expired card keeps its linkages; the citizen's death still ends them."""
    from insurance import services as insurance_services
    from insurance.models import Certificate, CitizenStatus
    from payments.linkages.services import linkage_create
    from payments.models import LinkageState, OutboxEvent, Partner, WalletLinkage

    partner = Partner.objects.create(code="wallet_expired", name="W", kind="wallet", webhook_url="http://127.0.0.1:9/h")
    citizen = make_citizen("310000", with_card=True)
    linkage = linkage_create(actor=system_actor, partner=partner, citizen=citizen, partner_user_ref="u-expired")
    card = Certificate.objects.get(citizen=citizen)
    insurance_services.certificate_expire(actor=system_actor, certificate=card)

    insurance_services.citizen_set_status(
        actor=system_actor, citizen=citizen, status=CitizenStatus.DECEASED, reason="death registered"
    )

    linkage = WalletLinkage.objects.get(pk=linkage.pk)
    assert linkage.state == LinkageState.UNLINKED
    assert linkage.end_reason == "citizen_status"
    last = OutboxEvent.objects.filter(partner=partner).order_by("-id").first()
    assert last.type == "linkage.unlinked"
