"""`prepared.fetch_one` sends its SQL with `$n` placeholders (psycopg's raw queries), numbered once per text."""

import datetime as dt

import pytest

from portal import prepared

pytestmark = pytest.mark.django_db


def test_placeholders_are_numbered_in_order_and_a_doubled_percent_is_one():
    assert prepared.numbered("SELECT %s, '50%%', %s") == "SELECT $1, '50%', $2"
    assert prepared.numbered("SELECT 1") == "SELECT 1"


def test_any_other_percent_form_is_refused():
    with pytest.raises(ValueError, match="only %s placeholders"):
        prepared.numbered("SELECT %(name)s")


def test_more_than_fifty_parameters_and_every_type_of_the_hot_path_arrive_as_sent():
    # Past psycopg's cache limits (50 parameters, 4 kB): the statements that were converted on every call.
    values = [*range(60), "文字 %s", None, b"\x00bytes", dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC), True]
    sql = "SELECT " + ", ".join("%s" for _ in values) + ", '100%%'"
    assert list(prepared.fetch_one(sql, values)) == [*values, "100%"]


def test_without_parameters_the_text_goes_as_it_is():
    assert prepared.fetch_one("SELECT '%s%%'", None) == ("%s%%",)
