"""Issue 16, finding 11: a refused or missing page is one WARNING line in the log, with no
traceback; a 403 is an everyday answer (a clerk following an old link), not a bug."""

import logging

import pytest
from django.urls import reverse

from portal.models import Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db


def _request_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("django")]


def test_a_403_logs_one_warning_line_without_a_traceback(client, make_user, caplog):
    sign_in(client, make_user(Role.CLERK, ("310000",)))
    with caplog.at_level(logging.INFO):
        assert client.get(reverse("staff_list")).status_code == 403
    records = _request_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert all(r.levelno == logging.WARNING for r in records)
    assert all(not r.exc_info and not r.exc_text for r in records), "no traceback for a 403"
    assert all("\n" not in r.getMessage() for r in records)


def test_a_404_logs_one_warning_line_without_a_traceback(client, make_user, caplog):
    sign_in(client, make_user(Role.CLERK, ("310000",)))
    with caplog.at_level(logging.INFO):
        assert client.get(reverse("citizen_detail", args=[987654321])).status_code == 404
    records = _request_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert all(not r.exc_info and not r.exc_text for r in records), "no traceback for a 404"


def test_a_django_request_warning_is_printed_by_the_root_handler_only_even_in_debug(settings):
    """Django's own `django` console handler (DEBUG only) printed each line a second time
    beside the root handler."""
    settings.DEBUG = True
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Forbidden", None, None)
    own = [
        handler
        for name in ("django.request", "django")
        for handler in logging.getLogger(name).handlers
        if record.levelno >= handler.level and handler.filter(record)
    ]
    assert own == []
    assert logging.getLogger("django.request").propagate and logging.getLogger("django").propagate
