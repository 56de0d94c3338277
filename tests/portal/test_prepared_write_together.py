"""`prepared.write_together`: several independent writes as one statement, run at once (the
settlement hot path's changes, payments/settlements/store.py `settlement_change_write`)."""

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


def test_the_write_runs_at_once_so_the_next_statement_sees_it(regions):
    """Nothing is held back for a later statement to join: one statement for the write, one for the read."""
    with CaptureQueriesContext(connection) as captured:
        assert prepared.write_together([_rename("310000", "Shanghai*")]) == ["310000"]
        name = Region.objects.values_list("name_en", flat=True).get(code="310000")
    assert name == "Shanghai*"
    assert len(captured.captured_queries) == 2 and captured.captured_queries[1]["sql"].startswith("SELECT")
