"""The plans PostgreSQL keeps for the partner API's prepared lookups by public id.

A prepared statement runs on a generic plan after its first executions. For "this partner's
settlement (or linkage) with this public id", a generic plan chose the index on the partner and
filtered every one of the partner's rows (0.4 ms at 800 settlements, linear in the table): each
confirm and each mint would slow down as the partner's history grows. The lookups now go by the
unique public id alone and compare the partner afterwards; these tests hold the generic plans to
that index, and check that another partner's id still finds nothing.
"""

import pytest
from django.db import connection

from payments.models import Settlement, WalletLinkage
from payments.settlements import store
from payments.tokens import services as qr

pytestmark = pytest.mark.django_db


def _generic_plan(sql: str, params: list) -> str:
    """EXPLAIN of `sql` as a prepared statement on its generic plan ($1... for %s)."""
    numbered = sql
    for index in range(1, len(params) + 1):
        numbered = numbered.replace("%s", f"${index}", 1)
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        try:
            cursor.execute(f"PREPARE ecard_plan_check AS {numbered}")
            placeholders = ", ".join(["%s"] * len(params))
            cursor.execute(f"EXPLAIN EXECUTE ecard_plan_check({placeholders})", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            cursor.execute("DEALLOCATE ecard_plan_check")
        finally:
            cursor.execute("RESET plan_cache_mode")
    return plan


def _unique_index(model, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]"
            " WHERE x.indrelid = %s::regclass AND x.indisunique AND x.indnatts = 1 AND a.attname = %s",
            [model._meta.db_table, column],
        )
        return cursor.fetchone()[0]


def test_a_settlement_is_found_by_its_public_id_index_whatever_the_plan():
    plan = _generic_plan(store.OWNED_SQL, ["stl_none"])
    assert _unique_index(Settlement, "public_id") in plan, plan
    assert "partner" not in plan, plan


def test_confirms_locked_settlement_is_found_by_its_public_id_index_whatever_the_plan():
    plan = _generic_plan(store.LOCKED_BY_PUBLIC_ID_SQL[0], ["stl_none"])
    assert _unique_index(Settlement, "public_id") in plan, plan
    assert "settlement_partner" not in plan, plan


def test_a_linkage_to_mint_for_is_found_by_its_public_id_index_whatever_the_plan():
    plan = _generic_plan(qr._mint_target_sql(), ["lnk_none"])
    assert _unique_index(WalletLinkage, "public_id") in plan, plan
    assert "partner" not in plan, plan
