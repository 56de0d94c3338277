"""A partner's webhook receiver is down until its event is dead; a national operator (with TOTP)
finds the dead event in the delivery monitor and replays it after confirming; once the receiver
is back on the same port, the next delivery reaches it."""

from __future__ import annotations

import re

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from payments import keys
from payments.delivery import services as delivery
from payments.linkages import services
from payments.models import DeliveryAttempt, OutboxEvent, OutboxState, Partner, PartnerKind
from portal.actors import Actor
from portal.audit import verify_chain
from portal.models import AuditEvent, Role
from testkit.browser import PASSWORD, menu_link, sign_in_with_password
from testkit.processes import WebhookReceiver, free_port

pytestmark = [pytest.mark.browser]


@pytest.fixture
def portal_key(transactional_db):
    keys._forget_cached_key()
    key = keys.portal_key_create(actor=Actor.system("tests"))
    yield key
    keys._forget_cached_key()


def deliver_until_dead(event: OutboxEvent) -> None:
    """The real delivery code against a closed loopback port, attempt after attempt: each failure
    schedules the next by the contract's schedule, which is brought forward instead of waited for."""
    for _attempt in range(16):
        OutboxEvent.objects.filter(pk=event.pk, state=OutboxState.PENDING).update(next_attempt_at=event.created_at)
        assert delivery.deliver_one(event.pk) is True
    event.refresh_from_db()


def test_operator_replays_a_dead_event_and_the_receiver_back_up_gets_it(
    page,
    url,
    screen,
    make_user,
    make_citizen,
    portal_key,
    totp,
):
    port = free_port()  # nothing listens here yet: the partner's receiver is down
    partner = Partner.objects.create(
        code="wechat", name="微信支付", kind=PartnerKind.WALLET, webhook_url=f"http://127.0.0.1:{port}/webhook"
    )
    citizen = make_citizen("310000", with_card=True, name="王小明")
    linkage = services.linkage_create(
        actor=Actor.system("tests"), partner=partner, citizen=citizen, partner_user_ref="user-1"
    )
    event = OutboxEvent.objects.get(partner=partner, object_id=linkage.public_id)
    deliver_until_dead(event)
    assert (event.state, event.attempts, event.last_error) == (OutboxState.DEAD, 16, "connection failed")

    operator = make_user(Role.NATIONAL_OPERATOR, username="operator-browser", password=PASSWORD)
    secret = generate_totp_secret()
    TOTP.activate(operator, secret)

    sign_in_with_password(page, url, screen, "operator-browser", "operator")
    assert "/accounts/2fa/authenticate/" in page.url, "a national operator needs the TOTP code"
    screen("totp-code")
    page.fill("input[name=code]", totp.code(secret))
    page.locator("input[name=code]").press("Enter")
    page.wait_for_load_state()

    menu_link(page, "投递监控").click()
    page.wait_for_url(re.compile(r"/partners/monitor/$"))
    screen("monitor")
    row = page.locator("table tbody tr", has_text="微信支付")
    assert row.locator(".badge.revoked").inner_text() == "1", "one dead event"
    row.get_by_role("link", name="查看").click()
    page.wait_for_url(re.compile(r"/partners/monitor/wechat/$"))
    screen("partner")
    event_row = page.locator("table tbody tr", has_text=event.public_id)
    assert event_row.locator(".badge").inner_text() == "投递失败"
    assert "连接失败" in event_row.inner_text()  # "connection failed", through its label
    event_row.get_by_role("link", name="查看").click()
    page.wait_for_url(re.compile(rf"/events/{event.public_id}/$"))
    screen("dead-event")
    assert page.locator("table tbody tr").count() == 16, "every failed attempt is listed"
    assert "王小明" not in page.content(), "the body is shown masked"

    page.get_by_role("link", name="重新投递").click()
    page.wait_for_url(re.compile(rf"/events/{event.public_id}/replay/$"))
    screen("replay")
    page.fill("input[name=reason]", "合作方已修复接收地址")
    page.get_by_role("button", name="继续").click()
    page.get_by_text("请确认。").wait_for()
    screen("replay-confirm")
    assert OutboxEvent.objects.get(pk=event.pk).state == OutboxState.DEAD, "nothing happens before confirming"
    page.get_by_role("button", name="确认").click()
    page.wait_for_url(re.compile(rf"/events/{event.public_id}/$"))
    screen("replayed")
    event.refresh_from_db()
    assert (event.state, event.attempts) == (OutboxState.PENDING, 0)
    assert page.get_by_role("link", name="重新投递").count() == 0, "a pending event offers no replay"
    replayed = AuditEvent.objects.get(action="outbox_event.replay", object_id=event.public_id)
    assert (replayed.actor_label, replayed.reason) == ("operator-browser", "合作方已修复接收地址")

    receiver = WebhookReceiver(port=port).start()  # the partner's receiver is back, on the same port
    try:
        # What the sweep the replay queues does for this event (payments.delivery.kick_sweep).
        assert delivery.deliver_one(event.pk) is True
        [got] = receiver.received
    finally:
        receiver.stop()
    assert got.headers["ecard-event-id"] == event.public_id
    assert got.body == event.body.encode()
    event.refresh_from_db()
    assert (event.state, event.attempts, event.last_status) == (OutboxState.DELIVERED, 1, 204)
    assert DeliveryAttempt.objects.filter(event=event).count() == 17

    page.reload()
    screen("delivered")
    assert page.locator("dl.facts").get_by_text("已投递").count() == 1
    assert verify_chain() == []
