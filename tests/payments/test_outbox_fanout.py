"""E-card changes fan out to the partners holding the card, in the same transaction."""

import json
import re

import pytest
from django.db import transaction

from insurance import services
from payments.linkages.services import linkage_create, linkage_unlink
from payments.models import OutboxEvent, Partner, PartnerKind, WalletLinkage

pytestmark = pytest.mark.django_db

LINKAGE_KEYS = {
    "id",
    "partner_user_ref",
    "state",
    "end_reason",
    "certificate",
    "citizen",
    "created_at",
    "ended_at",
    "version",
}
RFC3339_SHANGHAI = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+08:00$")


@pytest.fixture
def partners(db):
    return [
        Partner.objects.create(code=code, name=code, kind=PartnerKind.WALLET, webhook_url="http://127.0.0.1:9/h")
        for code in ("wechat", "alipay", "other")
    ]


@pytest.fixture
def linked(make_citizen, partners, system_actor):
    """A citizen whose card is held by two partners' wallets (the third partner holds nothing)."""
    citizen = make_citizen(name="张三明", with_card=True)
    first = linkage_create(actor=system_actor, partner=partners[0], citizen=citizen, partner_user_ref="wx-1")
    second = linkage_create(actor=system_actor, partner=partners[1], citizen=citizen, partner_user_ref="ali-1")
    return citizen, first, second


def bodies(partner: Partner, after_id: int = 0) -> list[dict]:
    return [json.loads(e.body) for e in OutboxEvent.objects.filter(partner=partner, id__gt=after_id).order_by("id")]


def last_id() -> int:
    return OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def assert_event_shape(body: dict, event: OutboxEvent | None = None) -> dict:
    assert set(body) == {"id", "type", "created_at", "data"}
    assert body["id"].startswith("evt_") and len(body["id"]) <= 40
    assert RFC3339_SHANGHAI.match(body["created_at"]), body["created_at"]
    obj = body["data"]["object"]
    assert set(obj) == LINKAGE_KEYS
    assert set(obj["certificate"]) == {"number", "state", "expires_at"}
    assert RFC3339_SHANGHAI.match(obj["certificate"]["expires_at"])
    assert set(obj["citizen"]) == {"name_masked", "id_number_masked", "region_code", "scheme"}
    assert RFC3339_SHANGHAI.match(obj["created_at"])
    return obj


def test_the_first_linkage_gives_linkage_created_only_and_no_activation_event(linked, partners):
    citizen, first, second = linked

    for partner, linkage in ((partners[0], first), (partners[1], second)):
        events = bodies(partner)
        assert [e["type"] for e in events] == ["linkage.created"]
        obj = assert_event_shape(events[0])
        assert obj["id"] == linkage.public_id
        assert obj["version"] == 1
        assert obj["certificate"]["state"] == "active"
    assert not OutboxEvent.objects.filter(type="certificate.activated").exists()
    assert bodies(partners[2]) == []


def test_each_card_change_sends_each_holding_partner_the_linkage_with_a_growing_version(linked, partners, system_actor):
    citizen, first, second = linked
    card = citizen.current_certificate()
    start = last_id()

    services.certificate_suspend(actor=system_actor, certificate=card, reason="lost phone")
    services.certificate_reinstate(actor=system_actor, certificate=card, reason="found it")
    services.certificate_expire(actor=system_actor, certificate=card)

    for partner, linkage in ((partners[0], first), (partners[1], second)):
        events = bodies(partner, start)
        assert [e["type"] for e in events] == ["certificate.suspended", "certificate.reinstated", "certificate.expired"]
        objects = [assert_event_shape(e) for e in events]
        assert [o["version"] for o in objects] == [2, 3, 4]
        assert [o["certificate"]["state"] for o in objects] == ["suspended", "active", "expired"]
        assert {o["id"] for o in objects} == {linkage.public_id}
        assert all(o["state"] == "active" for o in objects)
        assert all(o["citizen"]["name_masked"] == "张*明" for o in objects)
        stored = OutboxEvent.objects.filter(partner=partner, id__gt=start).order_by("id")
        assert [e.public_id for e in stored] == [e["id"] for e in events]
        assert all(e.object_id == linkage.public_id for e in stored)
        assert WalletLinkage.objects.get(pk=linkage.pk).version == 4
    assert bodies(partners[2]) == []


def test_events_carry_no_unmasked_personal_data(linked, system_actor):
    citizen, _, _ = linked
    services.certificate_suspend(actor=system_actor, certificate=citizen.current_certificate(), reason="r")

    for event in OutboxEvent.objects.all():
        assert citizen.id_number not in event.body
        assert "张三明" not in event.body
        assert citizen.phone not in event.body


def test_a_revocation_sends_certificate_revoked_then_linkage_unlinked(linked, partners, system_actor):
    citizen, first, _ = linked
    card = citizen.current_certificate()
    start = last_id()

    services.certificate_revoke(actor=system_actor, certificate=card, reason="fraud")

    events = bodies(partners[0], start)
    assert [e["type"] for e in events] == ["certificate.revoked", "linkage.unlinked"]
    revoked, unlinked = (assert_event_shape(e) for e in events)
    assert revoked["certificate"]["state"] == "revoked"
    assert revoked["state"] == "active"
    assert unlinked["state"] == "unlinked"
    assert unlinked["end_reason"] == "certificate_revoked"
    assert RFC3339_SHANGHAI.match(unlinked["ended_at"])
    assert (revoked["version"], unlinked["version"]) == (2, 3)
    assert [e["type"] for e in bodies(partners[1], start)] == ["certificate.revoked", "linkage.unlinked"]


@pytest.mark.parametrize("status", ["deceased", "moved_out"])
def test_a_citizen_status_change_unlinks_with_citizen_status(linked, partners, system_actor, status):
    citizen, _, _ = linked
    start = last_id()

    services.citizen_set_status(actor=system_actor, citizen=citizen, status=status, reason="registry")

    events = bodies(partners[0], start)
    assert [e["type"] for e in events] == ["certificate.revoked", "linkage.unlinked"]
    assert events[1]["data"]["object"]["end_reason"] == "citizen_status"


@pytest.mark.parametrize("from_state", ["active", "suspended", "expired"])
def test_a_reissue_sends_only_certificate_reissued_with_the_previous_number(linked, partners, system_actor, from_state):
    citizen, first, _ = linked
    card = citizen.current_certificate()
    if from_state == "suspended":
        services.certificate_suspend(actor=system_actor, certificate=card, reason="r")
    elif from_state == "expired":
        services.certificate_expire(actor=system_actor, certificate=card)
    version_before = WalletLinkage.objects.get(pk=first.pk).version
    start = last_id()

    new = services.certificate_reissue(actor=system_actor, certificate=card, reason="new phone")

    for partner in partners[:2]:
        events = bodies(partner, start)
        assert [e["type"] for e in events] == ["certificate.reissued"]
        assert set(events[0]["data"]) == {"object", "previous_number"}
        assert events[0]["data"]["previous_number"] == card.number
        obj = assert_event_shape(events[0])
        assert obj["certificate"]["number"] == new.number
        assert obj["certificate"]["state"] == ("suspended" if from_state == "suspended" else "active")
        assert obj["state"] == "active"
    assert bodies(partners[0], start)[0]["data"]["object"]["id"] == first.public_id
    assert WalletLinkage.objects.get(pk=first.pk).version == version_before + 1
    assert bodies(partners[2]) == []


def test_a_partner_whose_linkage_ended_hears_nothing_more(linked, partners, system_actor):
    citizen, first, _ = linked
    linkage_unlink(actor=system_actor, linkage=first, reason="citizen_request")
    start = last_id()

    services.certificate_suspend(actor=system_actor, certificate=citizen.current_certificate(), reason="r")

    assert bodies(partners[0], start) == []
    assert [e["type"] for e in bodies(partners[1], start)] == ["certificate.suspended"]


def test_a_card_nobody_holds_produces_no_outbox_event(make_citizen, system_actor):
    citizen = make_citizen(with_card=True)
    card = citizen.current_certificate()

    services.certificate_revoke(actor=system_actor, certificate=card, reason="r")

    assert not OutboxEvent.objects.exists()


def test_a_rolled_back_transaction_leaves_no_outbox_row(linked, system_actor):
    citizen, first, _ = linked
    card = citizen.current_certificate()
    before = OutboxEvent.objects.count()

    with pytest.raises(RuntimeError), transaction.atomic():
        services.certificate_suspend(actor=system_actor, certificate=card, reason="r")
        assert OutboxEvent.objects.count() == before + 2  # written in the business transaction
        raise RuntimeError("the rest of the request failed")

    assert OutboxEvent.objects.count() == before
    assert WalletLinkage.objects.get(pk=first.pk).version == 1
    card.refresh_from_db()
    assert card.state == "active"


def test_each_event_is_recorded_once_per_domain_event_partner_and_object(linked, system_actor):
    citizen, _, _ = linked
    services.certificate_revoke(actor=system_actor, certificate=citizen.current_certificate(), reason="r")

    keys = list(
        OutboxEvent.objects.exclude(domain_event=None).values_list("domain_event", "partner", "object_id", "type")
    )

    assert len(keys) == len(set(keys)) == 4


def test_a_change_to_what_partners_see_of_the_citizen_grows_the_linkage_version(linked, system_actor):
    citizen, first, second = linked

    services.citizen_update(actor=system_actor, citizen=citizen, name="张三丰", phone=citizen.phone, scheme="employee")
    services.citizen_update(actor=system_actor, citizen=citizen, name="张三丰", phone="13000000000", scheme="employee")

    # The first update changed the masked name and the scheme; the second only the phone, which partners do not see.
    assert WalletLinkage.objects.get(pk=first.pk).version == 2
    assert WalletLinkage.objects.get(pk=second.pk).version == 2
    assert not OutboxEvent.objects.exclude(type="linkage.created").exists()
