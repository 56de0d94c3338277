"""The delivery monitor: counts, events and attempts, replay of a dead event, pausing deliveries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
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
def linked(make_citizen, partner, system_actor):
    """A linkage (and its `linkage.created` event) in Shanghai and one in Guangdong."""
    out = {}
    for region in ("310000", "440000"):
        citizen = make_citizen(region, with_card=True, name="王小明")
        linkage = services.linkage_create(
            actor=system_actor, partner=partner, citizen=citizen, partner_user_ref=f"user-{region}"
        )
        out[region] = OutboxEvent.objects.get(object_id=linkage.public_id)
    return out


def make_dead(event: OutboxEvent) -> OutboxEvent:
    now = timezone.now()
    DeliveryAttempt.objects.create(
        event=event, number=1, started_at=now, status_code=500, latency_ms=42, error="HTTP 500"
    )
    OutboxEvent.objects.filter(pk=event.pk).update(
        state=OutboxState.DEAD, attempts=16, last_status=500, next_attempt_at=None
    )
    event.refresh_from_db()
    return event


def signed_in(client, make_user, role: str, regions=("310000",)):
    user = make_user(role, regions)
    sign_in(client, user)
    return user


@pytest.mark.parametrize("role", [Role.CLERK, Role.AUDITOR])
def test_clerks_and_auditors_cannot_open_the_monitor(client, make_user, partner, linked, role):
    signed_in(client, make_user, role)
    event = linked["310000"]
    for url in [
        reverse("monitor_index"),
        reverse("monitor_partner", args=[partner.code]),
        reverse("monitor_event", args=[partner.code, event.public_id]),
        reverse("monitor_replay", args=[partner.code, event.public_id]),
        reverse("monitor_deliveries", args=[partner.code]),
    ]:
        assert client.get(url).status_code == 403, url


def test_operator_sees_counts_of_pending_failing_and_dead(client, make_user, partner, linked):
    signed_in(client, make_user, Role.NATIONAL_OPERATOR)
    make_dead(linked["440000"])
    OutboxEvent.objects.filter(pk=linked["310000"].pk).update(attempts=2)
    response = client.get(reverse("monitor_partner", args=[partner.code]))
    assert response.status_code == 200
    assert response.context["counts"] == {"pending": 0, "failing": 1, "dead": 1, "delivered": 0}
    assert {e.public_id for e in response.context["page"]} == {linked["310000"].public_id, linked["440000"].public_id}
    index = client.get(reverse("monitor_index"))
    assert index.context["rows"][0][1]["dead"] == 1
    dead_only = client.get(reverse("monitor_partner", args=[partner.code]), {"state": "dead"})
    assert [e.public_id for e in dead_only.context["page"]] == [linked["440000"].public_id]


def test_an_event_page_shows_the_masked_body_and_the_attempts(client, make_user, partner, linked):
    signed_in(client, make_user, Role.NATIONAL_OPERATOR)
    event = make_dead(linked["310000"])
    html = client.get(reverse("monitor_event", args=[partner.code, event.public_id])).content.decode()
    assert "王*明" in html and "王小明" not in html
    assert "42 ms" in html and "HTTP 500" in html


def test_a_region_admin_sees_only_events_about_their_regions(client, make_user, partner, linked):
    signed_in(client, make_user, Role.REGION_ADMIN, ("310000",))
    response = client.get(reverse("monitor_partner", args=[partner.code]))
    assert [e.public_id for e in response.context["page"]] == [linked["310000"].public_id]
    assert response.context["counts"]["pending"] == 1
    other = linked["440000"]
    assert client.get(reverse("monitor_event", args=[partner.code, other.public_id])).status_code == 404
    make_dead(other)
    replay = reverse("monitor_replay", args=[partner.code, other.public_id])
    assert client.post(replay, {"reason": "", "confirmed": "yes"}).status_code == 404
    assert OutboxEvent.objects.get(pk=other.pk).state == OutboxState.DEAD


def test_a_region_admin_replays_a_dead_event_of_their_region_after_confirming(client, make_user, partner, linked):
    signed_in(client, make_user, Role.REGION_ADMIN, ("310000",))
    event = make_dead(linked["310000"])
    url = reverse("monitor_replay", args=[partner.code, event.public_id])
    assert 'name="confirmed"' in client.post(url, {"reason": "partner fixed its endpoint"}).content.decode()
    assert OutboxEvent.objects.get(pk=event.pk).state == OutboxState.DEAD
    assert client.post(url, {"reason": "partner fixed its endpoint", "confirmed": "yes"}).status_code == 302
    event.refresh_from_db()
    assert (event.state, event.attempts) == (OutboxState.PENDING, 0)
    assert AuditEvent.objects.filter(action="outbox_event.replay", object_id=event.public_id).exists()


def test_replaying_an_event_that_is_not_dead_is_refused(client, make_user, partner, linked):
    signed_in(client, make_user, Role.NATIONAL_OPERATOR)
    event = linked["310000"]
    response = client.post(
        reverse("monitor_replay", args=[partner.code, event.public_id]), {"reason": "", "confirmed": "yes"}
    )
    assert response.status_code == 302
    assert OutboxEvent.objects.get(pk=event.pk).state == OutboxState.PENDING
    assert not AuditEvent.objects.filter(action="outbox_event.replay").exists()


def test_only_a_national_operator_pauses_and_resumes_deliveries(client, make_user, partner, linked):
    signed_in(client, make_user, Role.REGION_ADMIN)
    url = reverse("monitor_deliveries", args=[partner.code])
    assert client.post(url, {"reason": "", "confirmed": "yes"}).status_code == 403
    signed_in(client, make_user, Role.NATIONAL_OPERATOR)
    assert client.post(url, {"reason": "maintenance", "confirmed": "yes"}).status_code == 302
    assert Partner.objects.get(pk=partner.pk).deliveries_paused
    assert client.post(url, {"reason": "maintenance over", "confirmed": "yes"}).status_code == 302
    assert not Partner.objects.get(pk=partner.pk).deliveries_paused
    assert list(AuditEvent.objects.filter(object_type="partner").values_list("action", flat=True).order_by("seq")) == [
        "partner.pause_deliveries",
        "partner.resume_deliveries",
    ]


def test_the_event_list_costs_a_fixed_number_of_queries(client, make_user, partner, linked, make_citizen, system_actor):
    signed_in(client, make_user, Role.REGION_ADMIN, ("310000",))
    url = reverse("monitor_partner", args=[partner.code])
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for n in range(5):
        citizen = make_citizen("310000", with_card=True)
        services.linkage_create(actor=system_actor, partner=partner, citizen=citizen, partner_user_ref=f"more-{n}")
    with CaptureQueriesContext(connection) as many:
        response = client.get(url)
    assert len(response.context["page"]) == 6
    assert len(many) == len(few)
