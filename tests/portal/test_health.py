"""/healthz and /readyz against the real PostgreSQL and Redis: a dependency that is down (a
closed port) is named in a 503, unapplied migrations are found, and no address leaks out."""

import pytest
from django.core.management import call_command
from django.test import override_settings

from portal.celery import app as celery_app
from portal.observability import health
from portal.replica import replica_configured
from testkit.processes import free_port


@pytest.fixture
def closed_port() -> int:
    return free_port()  # bound then released: nothing listens there


@pytest.fixture
def fresh_migration_check(monkeypatch):
    monkeypatch.setattr(health, "_migrations_applied", False)


def test_healthz_answers_without_signing_in(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


@pytest.mark.django_db
def test_readyz_is_ok_when_every_dependency_answers(client, fresh_migration_check):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    replica = "ok" if replica_configured() else "skipped"
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "broker": "ok", "migrations": "ok", "replica": replica},
    }
    assert response["Cache-Control"] == "no-store"
    assert health._migrations_applied  # remembered: the migration graph is not loaded again


@pytest.mark.django_db
def test_readyz_names_redis_when_it_cannot_be_reached_and_leaks_no_address(client, closed_port):
    with override_settings(REDIS_URL=f"redis://:s3cret-password@127.0.0.1:{closed_port}/0"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert body["failing"] == ["redis"]
    assert body["checks"]["redis"] == "failing: ConnectionError"
    assert body["checks"]["database"] == "ok"
    assert str(closed_port) not in response.content.decode()
    assert "s3cret" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_names_the_broker_when_it_cannot_be_reached(client, closed_port):
    configured = celery_app.conf.broker_write_url
    celery_app.conf.broker_write_url = f"redis://127.0.0.1:{closed_port}/0"  # what publishing connects to
    try:
        response = client.get("/readyz")
    finally:
        celery_app.conf.broker_write_url = configured
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]
    assert str(closed_port) not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_readyz_fails_while_a_migration_is_not_applied(client, fresh_migration_check):
    call_command("migrate", "payments", "0006", verbosity=0)
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["failing"] == ["migrations"]
        assert response.json()["checks"]["migrations"] == "failing: 1 migrations not applied"
        assert not health._migrations_applied
    finally:
        call_command("migrate", verbosity=0)
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_replica_check_is_skipped_without_a_replica_database(settings):
    # The replica's own checks are in tests/portal/test_replica_router.py, against a real standby.
    assert "replica" not in settings.DATABASES
    assert health.check_replica() == "skipped"


@pytest.mark.django_db
def test_readyz_and_metrics_are_outside_the_sign_in_controls(client, django_user_model):
    # A signed-in person who must still enrol TOTP is sent to enrolment from every screen, not from these.
    from portal.models import Role

    user = django_user_model.objects.create_user(username="ops", password="x" * 12, role=Role.NATIONAL_OPERATOR)
    client.force_login(user)
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/staff/").status_code == 302  # the control does apply to a screen
