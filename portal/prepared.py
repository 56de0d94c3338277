"""One-row reads by hand-written SQL, as server-side prepared statements on PostgreSQL.

For the few reads on the hottest path of the partner API (the signing key of
every request, the QR token of a verification). Building such a query with the
ORM costs about a millisecond of Python, and PostgreSQL then plans a 5-table
join afresh each time (~0.4 ms); a prepared statement is planned once per
connection. Django's own cursors bind parameters client-side and never
prepare, so nothing else in the project changes.

Prepared statements need `prepare_threshold` set in the database OPTIONS
(settings `DB_PREPARED_STATEMENTS`, on by default); behind a pooler in
transaction mode that predates protocol-level prepared statements, set it to 0
and these reads simply run unprepared. SQLite (the demo) uses a plain cursor.
"""

from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS, connections


class _Postgres:
    """psycopg 3 pieces, imported on first use (the demo runs on SQLite without them)."""

    cursor_class = None

    @classmethod
    def load(cls) -> None:
        from django.db.backends.postgresql import base
        from django.db.backends.postgresql.psycopg_any import register_tzloader

        class PreparingCursor(base.ServerBindingCursor):
            def execute(self, query, params=None, *, prepare=None, binary=None):
                return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)

        cls.timestamptz_oid = base.TIMESTAMPTZ_OID
        cls.text_format = base.Format.TEXT
        cls.register_tzloader = staticmethod(register_tzloader)
        cls.cursor_class = PreparingCursor


def _cursor(db):
    """A Django cursor (execute wrappers, query logging, error mapping) over a psycopg
    server-binding cursor that prepares what it runs: BaseDatabaseWrapper._cursor() with our
    cursor class in place of create_cursor()'s. The psycopg cursor is kept with its connection
    and reused (a new one per read cost ~25 us); the Django wrapper is made afresh, so that
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


def postgresql() -> bool:
    """Whether the default database is PostgreSQL. The hand-written SQL run through `fetch_one` on
    the payment hot paths is PostgreSQL's own (row locks, data-modifying CTEs, arrays, JSON); on
    any other database (the SQLite demo) its callers take a plain ORM form of the same work."""
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


def fetch_one(sql: str, params: Sequence[object]) -> tuple | None:
    """The first row of `sql` (`%s` placeholders) or None."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    cursor = _cursor(db)
    try:
        cursor.execute(sql, params)
        return cursor.fetchone()
    except BaseException:
        db._ecard_prepared_cursor = None  # a failed cursor is not reused
        raise


def write_together(statements: Sequence[tuple[str, Sequence[object]]]) -> list:
    """Run several independent writes as ONE statement (PostgreSQL data-modifying CTEs): one round
    trip and one statement's overhead instead of one per write. Each statement is an INSERT, UPDATE
    or DELETE ending in `RETURNING <one column>`, without a WITH of its own; the result is each one's
    returned value (None if it touched no row).

    All parts run on the same snapshot: none sees another's effect, so they must not depend on each
    other (a row written by one part is not visible to another; constraints and triggers apply as
    to separate statements, checked at the end of the statement). For rows the transaction has
    already locked, this is what a sequence of separate statements would do.
    """
    parts, params, results = [], [], []
    for index, (sql, values) in enumerate(statements):
        parts.append(f"w{index} AS ({sql})")
        params.extend(values)
        results.append(f"(SELECT * FROM w{index} LIMIT 1)")
    row = fetch_one(f"WITH {', '.join(parts)} SELECT {', '.join(results)}", params)
    return list(row)
