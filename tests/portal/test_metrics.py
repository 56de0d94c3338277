"""/metrics in the test process: request latency by route pattern and status, the business figures
read from the real database, webhook deliveries counted by result, and who may scrape."""

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from insurance.imports.jobs import import_job_create
from payments import keys
from payments.delivery import outbox
from payments.delivery import services as delivery
from payments.models import OutboxEvent, OutboxState, Partner, PartnerKind
from portal.actors import Actor
from portal.audit import audit_chain_pending, audit_record
from portal.models import Role
from testkit.metrics import samples, value
from testkit.processes import WebhookReceiver, free_port

pytestmark = pytest.mark.django_db

DURATION_COUNT = "ecard_http_request_duration_seconds_count"


def scrape(client, **extra) -> str:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def test_requests_are_counted_by_route_pattern_and_status_never_by_raw_path(client, portal_key):
    before = scrape(client)
    client.get("/healthz")
    client.get("/healthz")
    client.get("/dashboard/310000/")  # anonymous: sent to sign in
    client.get("/no-such-page-11010119900307851X")
    client.get("/api/v1/keys")  # the partner API's short way through the middleware is timed too
    after = scrape(client)

    def delta(**labels):
        return (value(after, DURATION_COUNT, **labels) or 0) - (value(before, DURATION_COUNT, **labels) or 0)

    assert delta(route="healthz", method="GET", status="200") == 2
    assert delta(route="dashboard/<str:region_code>/", method="GET", status="302") == 1
    assert delta(route="unmatched", method="GET", status="404") == 1
    assert delta(route="api/v1/keys", method="GET", status="200") == 1
    label_values = {v for _, labels in samples(after) for _, v in labels}
    assert not [v for v in label_values if "310000" in v or "11010119900307851X" in v]  # no id from a path


def test_metrics_refuse_an_address_outside_the_allowed_networks(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    settings.ECARD_METRICS_ALLOWED_CIDRS = ["203.0.113.0/24"]
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    assert client.get("/metrics").status_code == 403  # loopback is no longer listed


def test_metrics_accept_the_bearer_token_from_anywhere_and_refuse_a_wrong_one(client, settings):
    settings.ECARD_METRICS_TOKEN = "t0ken-for-the-scraper"
    elsewhere = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken-for-the-scraper", **elsewhere).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **elsewhere).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="t0ken-for-the-scraper", **elsewhere).status_code == 403


def _event(partner: Partner, object_id: str) -> OutboxEvent:
    with transaction.atomic():
        return outbox.enqueue(partner=partner, type="linkage.created", obj={"id": object_id})


def test_outbox_figures_per_partner_come_from_the_database(client):
    pushed = Partner.objects.create(
        code="wechat", name="WeChat", kind=PartnerKind.WALLET, webhook_url="http://x.invalid/"
    )
    paused = Partner.objects.create(
        code="alipay", name="Alipay", kind=PartnerKind.WALLET, webhook_url="http://y.invalid/", deliveries_paused=True
    )
    now = timezone.now()
    waiting = _event(pushed, "lnk_1")
    OutboxEvent.objects.filter(pk=waiting.pk).update(next_attempt_at=now - dt.timedelta(minutes=10))
    later = _event(pushed, "lnk_2")
    OutboxEvent.objects.filter(pk=later.pk).update(next_attempt_at=now + dt.timedelta(minutes=10))  # a retry ahead
    dead = _event(pushed, "lnk_3")
    OutboxEvent.objects.filter(pk=dead.pk).update(state=OutboxState.DEAD, next_attempt_at=None)
    _event(paused, "lnk_4")

    text = scrape(client)
    assert value(text, "ecard_outbox_due_events", partner="wechat") == 1
    assert 600 <= value(text, "ecard_outbox_oldest_due_age_seconds", partner="wechat") < 700
    assert value(text, "ecard_outbox_dead_events", partner="wechat") == 1
    # A paused partner's events wait by design: counted as dead only, never as due.
    assert value(text, "ecard_outbox_due_events", partner="alipay") is None
    assert value(text, "ecard_outbox_dead_events", partner="alipay") == 0


def test_unchained_audit_rows_and_their_age_until_the_chainer_runs(client):
    audit_chain_pending()
    assert value(scrape(client), "ecard_audit_unchained_rows") == 0
    with transaction.atomic():
        audit_record(actor=Actor.system("tests"), action="test.metrics", object_type="test", object_id="1")
    text = scrape(client)
    assert value(text, "ecard_audit_unchained_rows") >= 1
    assert value(text, "ecard_audit_oldest_unchained_age_seconds") >= 0
    audit_chain_pending()
    text = scrape(client)
    assert value(text, "ecard_audit_unchained_rows") == 0
    assert value(text, "ecard_audit_oldest_unchained_age_seconds") == 0


def test_import_jobs_and_settlements_by_state(client, make_user, settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    before = scrape(client)
    clerk = make_user(Role.CLERK)
    import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=clerk.regions.get(),
        upload=SimpleUploadedFile("people.csv", b"id_number,name,phone,region_code,scheme\n"),
    )
    text = scrape(client)
    assert value(text, "ecard_import_jobs", state="queued") == value(before, "ecard_import_jobs", state="queued") + 1
    assert value(text, "ecard_import_jobs", state="done") == value(before, "ecard_import_jobs", state="done")
    for state in ("pending_payment", "paid", "cancelled", "expired", "refunded"):
        assert value(text, "ecard_settlements_recent", state=state) is not None


def test_readiness_checks_are_exported(client):
    text = scrape(client)
    for check in ("database", "redis", "broker", "migrations", "replica"):
        assert value(text, "ecard_readiness_check", check=check) == 1


@pytest.fixture
def signing(portal_key):
    keys._forget_cached_key()
    yield
    keys._forget_cached_key()


def test_webhook_deliveries_are_counted_by_result(client, signing, settings):
    receiver = WebhookReceiver().start()
    try:
        partner = Partner.objects.create(
            code="wechat", name="WeChat", kind=PartnerKind.WALLET, webhook_url=receiver.url
        )
        down = Partner.objects.create(
            code="alipay", name="Alipay", kind=PartnerKind.WALLET, webhook_url=f"http://127.0.0.1:{free_port()}/"
        )
        before = scrape(client)
        assert delivery.deliver_one(_event(partner, "lnk_1").pk)
        assert delivery.deliver_one(_event(down, "lnk_2").pk)  # connection refused: retried later
        settings.ECARD_DELIVERY_RETRY_SCHEDULE = []  # no retry left: the next failure is the last
        assert delivery.deliver_one(_event(down, "lnk_3").pk)
        after = scrape(client)
    finally:
        receiver.stop()

    def delta(result):
        name = "ecard_webhook_deliveries_total"
        return value(after, name, result=result) - value(before, name, result=result)

    assert (delta("delivered"), delta("failed"), delta("dead")) == (1, 1, 1)
    assert value(after, "ecard_outbox_dead_events", partner="alipay") == 1


@pytest.mark.urls("tests.portal.metrics_urls")
def test_database_and_redis_errors_escaping_a_request_are_counted(client):
    from django.test import Client

    failing = Client(raise_request_exception=False)
    before = scrape(client)
    assert failing.get("/tests/database-fails/").status_code == 500
    assert failing.get("/tests/redis-fails/").status_code == 503  # unreachable: the 503 page, still counted
    assert failing.get("/tests/redis-fails/").status_code == 503
    after = scrape(client)

    def delta(backend):
        name = "ecard_backend_errors_total"
        return value(after, name, backend=backend) - value(before, name, backend=backend)

    assert (delta("database"), delta("redis")) == (1, 2)
    assert value(after, DURATION_COUNT, route="tests/redis-fails/", method="GET", status="503") >= 2
