"""A screen asked for while the database or Redis cannot be reached (a failover, a restart) answers
the portal's 503 page, translated, with `Retry-After`, not the 500 page; one warning line names the
exception's class, and the error is counted in `ecard_backend_errors_total`. A bad query is still
a bug: 500. /healthz touches neither and stays alive.

The outages are real: the Django connection's backend ended from another session, the cache
pointed at a loopback port nobody listens on."""

import logging

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse
from prometheus_client import REGISTRY

from portal.models import Role
from testkit.database import terminate_backend
from testkit.processes import free_port
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db(transaction=True)

TITLES = {
    "zh-hans": ("暂时无法使用", "平台暂时无法使用，请稍后重试。"),
    "en": ("Briefly unavailable", "try again in a moment"),
}


@pytest.fixture(autouse=True)
def _fresh_connection_after():
    yield
    connection.close()  # the test client leaves a broken connection open (Django closes it after a request)


def _client(language: str) -> Client:
    client = Client(raise_request_exception=False)
    if language == "en":
        client.cookies["django_language"] = "en"
    return client


def _backend_errors(backend: str) -> float:
    return REGISTRY.get_sample_value("ecard_backend_errors_total", {"backend": backend}) or 0.0


def _check_503(response, language: str, caplog, exception: str) -> None:
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    title, explanation = TITLES[language]
    other_title = TITLES["en" if language == "zh-hans" else "zh-hans"][0]
    assert title in page and explanation in page and other_title not in page
    assert f'href="{reverse("home")}"' in page and 'class="topbar"' in page
    for debug in ("Traceback", "Django", exception):
        assert debug not in page
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname) for r in lines] == [("portal.unavailable", "WARNING")], [
        r.getMessage() for r in lines
    ]
    assert exception in lines[0].getMessage() and not lines[0].exc_info


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_a_screen_while_the_database_is_gone_answers_the_translated_503_page(make_user, language, caplog):
    client = _client(language)
    sign_in(client, make_user(Role.CLERK))
    assert client.get(reverse("citizen_search")).status_code == 200
    errors = _backend_errors("database")
    terminate_backend()
    with caplog.at_level(logging.INFO):
        response = client.get(reverse("citizen_search"))  # the session is read in middleware: it fails there
    _check_503(response, language, caplog, "OperationalError")
    assert _backend_errors("database") == errors + 1


def test_a_sign_in_while_redis_is_gone_answers_the_503_page(regions, caplog):
    client = _client("en")
    unreachable = {"default": {**settings.CACHES["default"], "LOCATION": [f"redis://127.0.0.1:{free_port()}/0"]}}
    errors = _backend_errors("redis")
    try:
        with override_settings(CACHES=unreachable), caplog.at_level(logging.INFO):
            response = client.post(reverse("account_login"), {"login": "nobody-here", "password": "wrong-password-1"})
    finally:
        cache.close()
    _check_503(response, "en", caplog, "ConnectionError")
    assert _backend_errors("redis") == errors + 1


@pytest.mark.urls("tests.portal.metrics_urls")
def test_a_bad_query_is_still_the_500_page():
    assert _client("en").get("/tests/database-fails/").status_code == 500


def test_healthz_stays_alive_while_the_database_is_gone():
    terminate_backend()
    response = Client().get("/healthz")
    assert (response.status_code, response.json()) == (200, {"ok": True})


def _as_django_raises(django_error: type[Exception], cause: Exception) -> Exception:
    """`cause` wrapped as Django's database layer wraps what psycopg raises."""
    try:
        try:
            raise cause
        except Exception as exc:
            raise django_error(str(exc)) from exc
    except django_error as wrapped:
        return wrapped


@pytest.mark.django_db(transaction=False)
def test_a_connection_out_of_step_with_its_replies_is_unreachable_and_a_server_internal_error_is_not():
    """The drill's leader kill through PgBouncer gave psycopg "received 2 results from command
    'BEGIN'" (its own InternalError, without a SQLSTATE): the connection is lost, a 503. An
    InternalError of the server (a SQLSTATE: an aborted transaction) is a bug of ours: a 500."""
    import psycopg
    from django.db import InternalError

    from portal.unavailable import unreachable_backend

    lost = _as_django_raises(InternalError, psycopg.InternalError("received 2 results from command 'BEGIN'"))
    assert unreachable_backend(lost) == "database"
    aborted = _as_django_raises(InternalError, psycopg.errors.InFailedSqlTransaction("current transaction is aborted"))
    assert unreachable_backend(aborted) is None
