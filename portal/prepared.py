"""One-row reads by hand-written SQL, as server-side prepared statements on PostgreSQL.

For the hottest reads and writes of the partner API (the signing key of every
request, the QR token of a verification, the settlement store). Building such a
query with the ORM costs far more Python than running it, and PostgreSQL would
plan a multi-table join afresh each time; a prepared statement is planned once
per connection (docs/adr/0001-settlement-hot-path.md). Django's own cursors bind parameters client-side and never
prepare, so nothing else in the project changes.

Prepared statements need `prepare_threshold` set in the database OPTIONS
(settings `DB_PREPARED_STATEMENTS`, on by default); behind a pooler in
transaction mode that predates protocol-level prepared statements, set it to 0
and these reads simply run unprepared.
"""

import re
from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS, connections


class _Postgres:
    """psycopg 3 pieces, imported on first use."""

    cursor_class = None

    @classmethod
    def load(cls) -> None:
        from django.db.backends.postgresql import base
        from django.db.backends.postgresql.psycopg_any import register_tzloader
        from psycopg.raw_cursor import PostgresRawQuery
        from psycopg.rows import dict_row, tuple_row

        class PreparingCursor(base.ServerBindingCursor):
            # The query is sent as given, with `$n` placeholders (`numbered` turns our `%s` into them,
            # once per text): psycopg's own conversion splits the text on every call when it has
            # more than its cache's limits of parameters or bytes, as the settlement writes do, and
            # that was a large share of a partner request's CPU.
            _query_cls = PostgresRawQuery

            def execute(self, query, params=None, *, prepare=None, binary=None):
                if params is not None:
                    query = numbered(query)
                return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)

        cls.timestamptz_oid = base.TIMESTAMPTZ_OID
        cls.text_format = base.Format.TEXT
        cls.register_tzloader = staticmethod(register_tzloader)
        cls.cursor_class = PreparingCursor
        cls.dict_row = staticmethod(dict_row)
        cls.tuple_row = staticmethod(tuple_row)


_NUMBERED: dict[str, str] = {}
_PLACEHOLDER = re.compile(r"%(.)", re.DOTALL)


def numbered(sql: str) -> str:
    """`sql` with its `%s` placeholders as PostgreSQL's `$1`, `$2`... and `%%` as `%`, as psycopg
    would send it; any other `%` form is refused (prepared SQL takes positional parameters only)."""
    found = _NUMBERED.get(sql)
    if found is None:
        count = 0

        def replace(match: re.Match) -> str:
            nonlocal count
            if match.group(1) == "s":
                count += 1
                return f"${count}"
            if match.group(1) == "%":
                return "%"
            raise ValueError(f"only %s placeholders in prepared SQL, not %{match.group(1)}")

        found = _PLACEHOLDER.sub(replace, sql)
        if len(_NUMBERED) >= 4096:  # a bounded set of texts; never reached unless SQL is built from data
            _NUMBERED.clear()
        _NUMBERED[sql] = found
    return found


def _cursor(db):
    """A Django cursor (execute wrappers, query logging, error mapping) over a psycopg
    server-binding cursor that prepares what it runs: BaseDatabaseWrapper._cursor() with our
    cursor class in place of create_cursor()'s. The psycopg cursor is kept with its connection
    and reused (a new one per read was measurable); the Django wrapper is made afresh, so that
    query logging follows `queries_logged` as for any cursor."""
    if _Postgres.cursor_class is None:
        _Postgres.load()
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        raw_connection = db.connection
        cached = getattr(db, "_ecard_prepared_cursor", None)
        if cached is not None and cached[0] is raw_connection and not cached[1].closed:
            raw = cached[1]
        else:
            raw = _Postgres.cursor_class(raw_connection)
            db._ecard_prepared_cursor = (raw_connection, raw)
        # As create_cursor(): follow the connection's time zone if it was changed since connecting.
        loader = raw_connection.adapters.get_loader(_Postgres.timestamptz_oid, _Postgres.text_format)
        if db.timezone != loader.timezone:
            _Postgres.register_tzloader(db.timezone, raw)
        return db._prepare_cursor(raw)


def fetch_one(sql: str, params: Sequence[object]) -> tuple | None:
    """The first row of `sql` (`%s` placeholders) or None."""
    db = connections[DEFAULT_DB_ALIAS]
    cursor = _cursor(db)
    try:
        cursor.execute(sql, params)
        return cursor.fetchone()
    except BaseException:
        db._ecard_prepared_cursor = None  # a failed cursor is not reused
        raise


def fetch_row(sql: str, params: Sequence[object]) -> dict | None:
    """The first row of `sql` as a dict by column name, or None: for reads whose columns are many,
    so that nobody unpacks them by position."""
    db = connections[DEFAULT_DB_ALIAS]
    cursor = _cursor(db)
    raw = cursor.cursor
    raw.row_factory = _Postgres.dict_row
    try:
        cursor.execute(sql, params)
        return cursor.fetchone()
    except BaseException:
        db._ecard_prepared_cursor = None  # a failed cursor is not reused
        raise
    finally:
        raw.row_factory = _Postgres.tuple_row


def write_together(statements: Sequence[tuple[str, Sequence[object]]]) -> list:
    """Run several independent writes as ONE statement (PostgreSQL data-modifying CTEs): one round
    trip instead of one per write. Each statement is an INSERT, UPDATE or DELETE ending in
    `RETURNING <one column>`, without a WITH of its own; the result is each one's returned value
    (None if it touched no row).

    All parts run on the same snapshot: none sees another's effect, so they must not depend on each
    other (constraints and triggers apply as to separate statements, checked at the end of the
    statement). For rows the transaction has already locked, this is what a sequence of separate
    statements would do.
    """
    parts, params, results = [], [], []
    for index, (sql, values) in enumerate(statements):
        parts.append(f"w{index} AS ({sql})")
        params.extend(values)
        results.append(f"(SELECT * FROM w{index} LIMIT 1)")  # noqa: S608 (our SQL)
    return list(fetch_one(f"WITH {', '.join(parts)} SELECT {', '.join(results)}", params))  # noqa: S608 (callers' constant SQL)
