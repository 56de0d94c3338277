"""Issue 16, finding 9: the delivery monitor retries a failing event now (not only a dead one),
counts each event in one state only, shows the attempts before the body, and asks a reason for
a webhook change as for pausing."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from payments.linkages import services
from payments.models import DeliveryAttempt, OutboxEvent, OutboxState, Partner
from portal.models import AuditEvent, Role
from testkit.screens import make_partner, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner():
    return make_partner("wechat", "WeChat Pay")


@pytest.fixture
def event(make_citizen, partner, system_actor):
    citizen = make_citizen("310000", with_card=True)
    linkage = services.linkage_create(actor=system_actor, partner=partner, citizen=citizen, partner_user_ref="u-1")
    return OutboxEvent.objects.get(object_id=linkage.public_id)


def make_failing(event: OutboxEvent) -> OutboxEvent:
    later = timezone.now() + timezone.timedelta(hours=2)
    DeliveryAttempt.objects.create(
        event=event, number=1, started_at=timezone.now(), status_code=502, latency_ms=7, error="HTTP 502"
    )
    OutboxEvent.objects.filter(pk=event.pk).update(attempts=3, last_status=502, next_attempt_at=later)
    event.refresh_from_db()
    return event


@pytest.fixture
def operator(client, make_user):
    user = make_user(Role.NATIONAL_OPERATOR, ("310000",))
    sign_in(client, user)
    return user


def test_a_failing_event_is_retried_now_after_a_reason_and_a_confirmation(client, operator, partner, event):
    make_failing(event)
    page = client.get(reverse("monitor_event", args=[partner.code, event.public_id])).content.decode()
    url = reverse("monitor_replay", args=[partner.code, event.public_id])
    assert url in page, "a failing event offers a retry"
    assert client.post(url, {"reason": ""}).context["form"].errors
    assert 'name="confirmed"' in client.post(url, {"reason": "partner is back"}).content.decode()
    event.refresh_from_db()
    assert event.next_attempt_at > timezone.now(), "nothing happens before confirming"
    assert client.post(url, {"reason": "partner is back", "confirmed": "yes"}).status_code == 302
    event.refresh_from_db()
    assert event.state == OutboxState.PENDING and event.next_attempt_at <= timezone.now()
    audit = AuditEvent.objects.get(action="outbox_event.replay", object_id=event.public_id)
    assert audit.reason == "partner is back"


def test_an_event_never_tried_offers_no_retry(client, operator, partner, event):
    page = client.get(reverse("monitor_event", args=[partner.code, event.public_id])).content.decode()
    assert reverse("monitor_replay", args=[partner.code, event.public_id]) not in page


def test_the_header_counts_a_failing_event_as_failing_only(client, operator, partner, event):
    make_failing(event)
    response = client.get(reverse("monitor_partner", args=[partner.code]))
    assert (response.context["counts"]["pending"], response.context["counts"]["failing"]) == (0, 1)
    pending_only = client.get(reverse("monitor_partner", args=[partner.code]), {"state": "pending"})
    assert list(pending_only.context["page"]) == []


def test_a_failing_event_is_shown_as_failing_as_the_header_counts_it(client, operator, partner, event):
    make_failing(event)
    listed = client.get(reverse("monitor_partner", args=[partner.code])).content.decode()
    assert '<span class="badge suspended">失败重试中</span>' in listed
    page = client.get(reverse("monitor_event", args=[partner.code, event.public_id])).content.decode()
    assert re.search(r"<dd>失败重试中\s", page), "not 待处理, which the header counts apart"


def test_the_attempts_come_before_the_body_which_folds(client, operator, partner, event):
    make_failing(event)
    page = client.get(reverse("monitor_event", args=[partner.code, event.public_id])).content.decode()
    html = page[page.index("<main") :]  # the menu's groups are <details> too
    assert html.index("HTTP 502") < html.index("<details")
    assert html.index("<details") < html.index('<pre class="mono')


def test_changing_the_webhook_asks_a_reason_which_is_audited(client, operator, partner):
    url = reverse("partner_webhook", args=[partner.code])
    missing = client.post(url, {"webhook_url": "https://new.example.cn/hook", "confirmed": "yes"})
    assert missing.status_code == 200 and missing.context["form"].errors.get("reason")
    partner.refresh_from_db()
    assert partner.webhook_url != "https://new.example.cn/hook"
    done = client.post(url, {"webhook_url": "https://new.example.cn/hook", "reason": "新地址", "confirmed": "yes"})
    assert done.status_code == 302
    assert Partner.objects.get(pk=partner.pk).webhook_url == "https://new.example.cn/hook"
    assert AuditEvent.objects.get(action="partner.set_webhook_url", object_id=partner.code).reason == "新地址"


def test_pausing_deliveries_needs_a_reason_which_is_audited(client, operator, partner):
    url = reverse("monitor_deliveries", args=[partner.code])
    assert client.post(url, {"reason": " ", "confirmed": "yes"}).context["form"].errors.get("reason")
    assert not Partner.objects.get(pk=partner.pk).deliveries_paused
    assert client.post(url, {"reason": "对方维护", "confirmed": "yes"}).status_code == 302
    assert Partner.objects.get(pk=partner.pk).deliveries_paused
    assert AuditEvent.objects.get(action="partner.pause_deliveries", object_id=partner.code).reason == "对方维护"


def _csv(response) -> str:
    return b"".join(response.streaming_content).decode("utf-8-sig")


def test_the_exports_name_event_types_and_errors_in_the_readers_language(client, operator, partner, event):
    DeliveryAttempt.objects.create(
        event=event, number=1, started_at=timezone.now(), latency_ms=5000, error="connection failed"
    )
    OutboxEvent.objects.filter(pk=event.pk).update(attempts=1, last_error="connection failed")
    events = _csv(client.post(reverse("monitor_partner", args=[partner.code]), {"format": "csv"}))
    assert "绑定钱包" in events and "连接失败" in events, events
    assert "linkage.created" in events, "the code too, as the partner's payload names it"
    attempts = _csv(client.post(reverse("monitor_event", args=[partner.code, event.public_id]), {"format": "csv"}))
    assert "连接失败" in attempts and "connection failed" not in attempts, attempts
