"""`prepared.write_together`: several independent writes as one statement (the settlement hot path)."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from portal import prepared
from portal.models import Region

pytestmark = pytest.mark.django_db


def _rename(code: str, name: str) -> tuple[str, list]:
    return 'UPDATE "portal_region" SET "name_en" = %s WHERE "code" = %s RETURNING "code"', [name, code]


def test_every_part_is_written_in_one_statement_and_answers_its_value(regions):
    with CaptureQueriesContext(connection) as captured:
        written = prepared.write_together(
            [_rename("310000", "Shanghai*"), _rename("440000", "Guangdong*"), _rename("999999", "nowhere")]
        )
    assert written == ["310000", "440000", None]  # a part that touched no row answers None
    assert len(captured.captured_queries) == 1
    assert dict(Region.objects.filter(code__in=["310000", "440000"]).values_list("code", "name_en")) == {
        "310000": "Shanghai*",
        "440000": "Guangdong*",
    }


def test_one_failing_part_writes_nothing(regions):
    before = dict(Region.objects.values_list("code", "name_en"))
    duplicate = (
        'INSERT INTO "portal_region" ("code", "name_zh", "name_en") VALUES (%s, %s, %s) RETURNING "code"',
        ["310000", "上海", "Shanghai again"],
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        prepared.write_together([_rename("440000", "changed"), duplicate])
    assert dict(Region.objects.values_list("code", "name_en")) == before


# --- joined_writes: a request's last write held back for the stored response to join -------------


def test_a_held_write_runs_before_the_next_statement_so_that_statement_sees_it(regions):
    got = []
    with prepared.joined_writes():
        prepared.write_together([_rename("310000", "Shanghai*")], then=got.append)
        assert got == []  # held
        with CaptureQueriesContext(connection) as captured:
            name = Region.objects.values_list("name_en", flat=True).get(code="310000")
        assert got == [["310000"]] and name == "Shanghai*"
        assert len(captured.captured_queries) == 2  # the held write, then the read, in that order
        assert captured.captured_queries[1]["sql"].startswith("SELECT")


def test_flush_joins_the_held_write_and_its_own_into_one_statement(regions):
    got = []
    with prepared.joined_writes() as joined:
        prepared.write_together([_rename("310000", "Shanghai*"), _rename("999999", "nowhere")], then=got.append)
        with CaptureQueriesContext(connection) as captured:
            values = joined.flush([_rename("440000", "Guangdong*"), _rename("999998", "nowhere")])
    assert len(captured.captured_queries) == 1
    assert got == [["310000", None]] and values == ["440000", None]
    assert dict(Region.objects.filter(code__in=["310000", "440000"]).values_list("code", "name_en")) == {
        "310000": "Shanghai*",
        "440000": "Guangdong*",
    }


def test_a_write_still_held_when_the_block_ends_runs_then_and_a_second_write_runs_the_first(regions):
    got = []
    with prepared.joined_writes():
        prepared.write_together([_rename("310000", "one")], then=got.append)
        prepared.write_together([_rename("440000", "two")], then=got.append)
        assert got == [["310000"]]
    assert got == [["310000"], ["440000"]]
    assert dict(Region.objects.filter(code__in=["310000", "440000"]).values_list("code", "name_en")) == {
        "310000": "one",
        "440000": "two",
    }


def test_outside_the_block_a_write_runs_at_once_and_the_block_does_not_nest(regions):
    got = []
    prepared.write_together([_rename("310000", "now")], then=got.append)
    assert got == [["310000"]]
    with prepared.joined_writes(), pytest.raises(RuntimeError), prepared.joined_writes():
        pass


def test_an_error_in_the_block_drops_the_held_write_and_its_callback(regions):
    before = dict(Region.objects.values_list("code", "name_en"))
    got = []
    with pytest.raises(ZeroDivisionError), transaction.atomic(), prepared.joined_writes():
        prepared.write_together([_rename("310000", "dropped")], then=got.append)
        1 / 0  # noqa: B018
    assert got == []
    assert dict(Region.objects.values_list("code", "name_en")) == before
    prepared.write_together([_rename("440000", "after")], then=got.append)  # nothing left held
    assert got == [["440000"]]
