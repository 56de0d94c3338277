"""Reads that tolerate lag go to a real streaming replica (portal/replica.py).

The session's replica is a pg_basebackup copy of the test cluster streaming from it
(testkit/replica.py); the test database reaches it by replication, so these tests are
transactional (an uncommitted test transaction never would). Which server a page read is
proved by pausing the replica's replay: a row written on the primary afterwards is missing
from what the replica serves.
"""

import logging
import os
import time

import pytest
from django.core.cache import cache
from django.db import connections, router
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from insurance.models import Citizen
from portal import replica as replica_module
from portal.models import AuditEvent, Role
from portal.replica import LAG_SQL, REPLICA, forget_measurement, reads_on_replica
from testkit.api import confirm, link, make_partner_client, mint, settled
from testkit.citizens import new_id_number
from testkit.replica import StreamingReplica, register_alias, unavailable_reason, unregister_alias
from testkit.screens import sign_in
from testkit.settlements import insured

_UNAVAILABLE = unavailable_reason()

pytestmark = [
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=f"no streaming replica here: {_UNAVAILABLE}"),
    pytest.mark.django_db(databases=["default", REPLICA], transaction=True),
]

REPLICA_PORT = int(os.environ.get("ECARD_TEST_REPLICA_PORT", "5433"))


@pytest.fixture(scope="session")
def streaming_replica(django_db_setup):
    """One standby for the session, made after pytest-django created the test database."""
    primary = connections["default"].settings_dict
    replica = StreamingReplica.create(
        host=primary["HOST"] or "127.0.0.1",
        port=int(primary["PORT"] or 5432),
        user=primary["USER"] or "postgres",
        password=primary["PASSWORD"] or "",
        replica_port=REPLICA_PORT,
    )
    try:
        yield replica
    finally:
        replica.destroy()


@pytest.fixture(scope="module")
def replica_alias(streaming_replica):
    """The `replica` alias on the standby for this module's tests only (before their test case
    checks the databases they name)."""
    previous = register_alias(streaming_replica)
    try:
        yield streaming_replica
    finally:
        unregister_alias(previous)


@pytest.fixture(autouse=True)
def routed(replica_alias, settings):
    """The router installed, a generous lag bound, no earlier measurement, window or warning."""
    settings.DATABASE_ROUTERS = ["portal.replica.ReplicaRouter"]
    settings.ECARD_REPLICA_MAX_LAG_SECONDS = 30
    settings.ECARD_READ_YOUR_WRITES_SECONDS = 10
    forget_measurement(warnings=True)
    cache.clear()
    yield replica_alias
    replica_alias.resume_replay()
    forget_measurement(warnings=True)
    cache.clear()


@pytest.fixture
def clerk(client, make_user):
    user = make_user(Role.CLERK)
    sign_in(client, user)
    return user


def detail_url(citizen: Citizen) -> str:
    return reverse("citizen_detail", args=[citizen.pk])


def replica_reads(captured: CaptureQueriesContext) -> list[str]:
    """The statements of a page on the replica, without the lag measurement."""
    return [q["sql"] for q in captured.captured_queries if q["sql"] != LAG_SQL]


def replica_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "portal.replica" and r.levelno == logging.WARNING]


def test_the_citizen_list_reads_the_replica_while_the_detail_page_reads_the_primary(
    client, clerk, make_citizen, routed
):
    seen = make_citizen()
    routed.wait_caught_up()
    routed.pause_replay()
    hidden = make_citizen(name="李四光")
    with CaptureQueriesContext(connections[REPLICA]) as on_replica:
        body = client.get(reverse("citizen_search")).content.decode()
    assert detail_url(seen) in body
    assert detail_url(hidden) not in body
    assert any("insurance_citizen" in sql for sql in replica_reads(on_replica))
    assert router.db_for_read(Citizen) == "default"  # the decision ended with the request
    # The detail page is not a tolerant read: it finds the row the replica has not applied yet.
    assert client.get(detail_url(hidden)).status_code == 200

    routed.resume_replay()
    routed.wait_caught_up()
    assert detail_url(hidden) in client.get(reverse("citizen_search")).content.decode()


@pytest.mark.parametrize(
    ("url_name", "role"),
    [
        ("dashboard", Role.REGION_ADMIN),
        ("audit_list", Role.AUDITOR),
        ("catalogue_list", Role.CLERK),
        ("facility_list", Role.CLERK),
        ("policy_index", Role.CLERK),
        ("settlement_list", Role.REGION_ADMIN),
        ("binding_queue", Role.CLERK),
        ("import_list", Role.CLERK),
        ("risk_queue", Role.REGION_ADMIN),
        ("staff_list", Role.REGION_ADMIN),
        ("partner_list", Role.NATIONAL_OPERATOR),
        ("monitor_index", Role.NATIONAL_OPERATOR),
    ],
)
def test_the_dashboards_lists_audit_log_and_catalogue_read_the_replica(client, make_user, routed, url_name, role):
    sign_in(client, make_user(role))
    routed.wait_caught_up()
    with CaptureQueriesContext(connections[REPLICA]) as on_replica:
        response = client.get(reverse(url_name))
    assert response.status_code == 200
    assert replica_reads(on_replica)


def test_after_a_post_the_same_person_reads_the_primary_until_the_window_ends(
    client, clerk, make_user, regions, routed, settings
):
    settings.ECARD_READ_YOUR_WRITES_SECONDS = 2
    colleague = Client()
    sign_in(colleague, make_user(Role.CLERK))
    routed.wait_caught_up()
    routed.pause_replay()
    response = client.post(
        reverse("citizen_register"),
        {
            "id_number": new_id_number("310000"),
            "name": "王五",
            "phone": "13812345679",
            "region": regions["310000"].pk,
            "scheme": "resident",
        },
    )
    assert response.status_code == 302, response.content.decode()
    registered = response["Location"]

    with CaptureQueriesContext(connections[REPLICA]) as on_replica:
        mine = client.get(reverse("citizen_search")).content.decode()
    assert registered in mine
    assert on_replica.captured_queries == []  # the window is decided before anything is measured
    assert registered not in colleague.get(reverse("citizen_search")).content.decode()

    time.sleep(2.2)
    assert registered not in client.get(reverse("citizen_search")).content.decode()


def test_a_replica_lagging_past_the_bound_is_skipped_with_one_warning(
    client, clerk, make_citizen, routed, settings, caplog
):
    settings.ECARD_REPLICA_MAX_LAG_SECONDS = 1
    routed.wait_caught_up()
    routed.pause_replay()
    citizen = make_citizen(name="赵六平")
    time.sleep(1.5)
    with caplog.at_level(logging.WARNING, logger="portal.replica"):
        with CaptureQueriesContext(connections[REPLICA]) as on_replica:
            first = client.get(reverse("citizen_search")).content.decode()
            forget_measurement()
            second = client.get(reverse("citizen_search")).content.decode()
    assert detail_url(citizen) in first and detail_url(citizen) in second
    assert [q["sql"] for q in on_replica.captured_queries] == [LAG_SQL, LAG_SQL]
    [warning] = replica_warnings(caplog)
    assert "lags" in warning and "赵六平" not in caplog.text


def test_a_stopped_replica_is_skipped_and_the_list_still_answers(client, clerk, make_citizen, routed, caplog):
    before = make_citizen()
    routed.wait_caught_up()
    assert detail_url(before) in client.get(reverse("citizen_search")).content.decode()
    routed.stop()
    try:
        forget_measurement()
        with caplog.at_level(logging.WARNING, logger="portal.replica"):
            first = client.get(reverse("citizen_search"))
            after = make_citizen(name="钱七安")
            forget_measurement()
            second = client.get(reverse("citizen_search"))
        assert first.status_code == 200 and second.status_code == 200
        assert detail_url(after) in second.content.decode()  # the primary's rows
        [warning] = replica_warnings(caplog)
        assert "cannot be read" in warning and "钱七安" not in caplog.text
    finally:
        routed.start()


def test_a_replica_that_fails_during_the_page_is_replaced_by_the_primary(
    client, clerk, make_citizen, routed, monkeypatch, caplog
):
    monkeypatch.setattr(replica_module, "MEASURE_EVERY_SECONDS", 3600.0)  # the measurement stays "healthy"
    citizen = make_citizen()
    routed.wait_caught_up()
    assert detail_url(citizen) in client.get(reverse("citizen_search")).content.decode()
    routed.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="portal.replica"):
            response = client.get(reverse("citizen_search"))
        assert response.status_code == 200
        assert detail_url(citizen) in response.content.decode()
        [warning] = replica_warnings(caplog)
        assert "failed" in warning
        assert router.db_for_read(Citizen) == "default"
    finally:
        routed.start()


def test_posts_and_writes_never_touch_the_replica(client, clerk, make_citizen, regions, routed):
    routed.wait_caught_up()
    with CaptureQueriesContext(connections[REPLICA]) as on_replica:
        with reads_on_replica():
            # Inside a replica decision, writes and the reads of their transaction stay on the primary.
            assert router.db_for_write(Citizen) == "default"
            citizen = make_citizen()
        response = client.post(
            reverse("citizen_register"),
            {
                "id_number": new_id_number("310000"),
                "name": "孙八",
                "phone": "",
                "region": regions["310000"].pk,
                "scheme": "resident",
            },
        )
        assert response.status_code == 302
        # A POST to a decorated list (the search box) is not a tolerant read either.
        assert client.post(reverse("citizen_search"), {"q": ""}).status_code == 302
        assert client.get(detail_url(citizen)).status_code == 200
    assert on_replica.captured_queries == []
    assert router.allow_migrate(REPLICA, "insurance") is False
    assert router.db_for_read(Citizen) == "default"  # outside a decorated view (a Celery task, say)


def test_an_export_reads_its_rows_on_the_replica_and_records_itself_on_the_primary(
    client, make_user, make_citizen, routed
):
    sign_in(client, make_user(Role.REGION_ADMIN))
    make_citizen()
    routed.wait_caught_up()
    routed.pause_replay()
    make_citizen(name="周九成")
    response = client.post(reverse("citizen_search"), {"format": "csv"})
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert response["X-Export-Rows"] == "1" and len(lines) == 2  # the header and the replica's one row
    assert Citizen.objects.count() == 2
    assert AuditEvent.objects.filter(action="list.export").count() == 1


def test_the_partner_api_and_its_events_never_read_the_replica(client, make_user, world, regions, routed):
    wallet = make_partner_client()
    citizen, _ = insured(regions, balance=3000)
    sign_in(client, make_user(Role.REGION_ADMIN))
    routed.wait_caught_up()
    with CaptureQueriesContext(connections[REPLICA]) as on_replica:
        assert client.get(reverse("settlement_list")).status_code == 200
    assert replica_reads(on_replica)  # the replica is healthy and would be used where allowed

    with CaptureQueriesContext(connections[REPLICA]) as on_replica:
        linkage = link(wallet, citizen)
        settlement = settled(wallet, mint(wallet, linkage["id"]), use_personal_account=True)
        assert confirm(wallet, settlement).status == 200
        assert wallet.get(f"/api/v1/settlements/{settlement['id']}").status == 200
        assert wallet.get("/api/v1/settlements").status == 200
        assert wallet.get("/api/v1/events").status == 200
    assert on_replica.captured_queries == []


def test_readyz_and_metrics_report_the_standbys_lag_and_its_outage(client, make_citizen, routed, settings):
    """/readyz and /metrics read the router's own measurement of the real standby."""
    routed.wait_caught_up()
    forget_measurement()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["replica"] == "ok", ready.content
    assert "ecard_replica_lag_seconds " in client.get("/metrics").content.decode()

    settings.ECARD_REPLICA_MAX_LAG_SECONDS = 1
    routed.pause_replay()
    make_citizen()
    time.sleep(1.5)
    forget_measurement()
    lagging = client.get("/readyz")
    assert lagging.status_code == 503 and "behind" in lagging.json()["checks"]["replica"], lagging.content
    routed.resume_replay()

    routed.stop()
    try:
        forget_measurement()
        down = client.get("/readyz")
        assert down.status_code == 503 and down.json()["checks"]["replica"] == "failing: replica unreadable", (
            down.content
        )
        assert "ecard_replica_lag_seconds " not in client.get("/metrics").content.decode()
    finally:
        routed.start()
