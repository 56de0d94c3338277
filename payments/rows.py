"""One-row INSERTs without the ORM's per-call SQL compilation, for the settlement hot path.

`Model.objects.create()` compiles its INSERT afresh on every call (about 0.3–0.5 ms of
Python for a wide row). `insert` builds the statement once per model and runs it as a
prepared statement (portal/prepared.py), with each field's own `pre_save` and
`get_db_prep_save`, exactly the values the ORM would send; database triggers and
constraints apply as to any INSERT.
"""

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import AutoField, Model

from portal import prepared

_SQL: dict[type, tuple[str, list]] = {}


def _insert_sql(model: type[Model]) -> tuple[str, list]:
    cached = _SQL.get(model)
    if cached is None:
        meta = model._meta
        fields = [field for field in meta.concrete_fields if not isinstance(field, AutoField)]
        columns = ", ".join('"' + field.column + '"' for field in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        sql = f'INSERT INTO "{meta.db_table}" ({columns}) VALUES ({placeholders}) RETURNING "{meta.pk.column}"'
        cached = _SQL[model] = (sql, fields)
    return cached


def insert_sql(model: type[Model]) -> tuple[str, list]:
    """`INSERT ... RETURNING pk` of one row of `model` and the fields its parameters follow."""
    return _insert_sql(model)


def insert_values(obj: Model, fields: list) -> list:
    """The parameters of `insert_sql`'s statement for `obj`, as the ORM would send them."""
    connection = connections[DEFAULT_DB_ALIAS]
    return [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]


def mark_saved(obj: Model, pk: int) -> None:
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = DEFAULT_DB_ALIAS


def insert(obj: Model) -> Model:
    """INSERT `obj` (a new instance) and set its primary key, as `save(force_insert=True)` would."""
    (pk,) = prepared.fetch_one(*insert_statement(obj))
    mark_saved(obj, pk)
    return obj


def insert_statement(obj: Model) -> tuple[str, list]:
    """`insert`'s statement and parameters, to run within `prepared.write_together` (then `mark_saved`)."""
    sql, fields = _insert_sql(type(obj))
    return sql, insert_values(obj, fields)


_UPDATE_SQL: dict[tuple[type, tuple[str, ...]], tuple[str, list]] = {}


def update(obj: Model, fields: list[str]) -> None:
    """UPDATE these fields of a saved `obj`, as `save(update_fields=...)` would (auto_now fields included)."""
    if prepared.fetch_one(*update_statement(obj, fields)) is None:
        raise type(obj).DoesNotExist(f"{type(obj).__name__} {obj.pk} is gone")


def update_statement(obj: Model, fields: list[str]) -> tuple[str, list]:
    """`update`'s statement and parameters (`RETURNING` the pk), to run within `prepared.write_together`."""
    model = type(obj)
    key = (model, tuple(fields))
    cached = _UPDATE_SQL.get(key)
    if cached is None:
        meta = model._meta
        chosen = [meta.get_field(name) for name in fields]
        chosen += [field for field in meta.concrete_fields
                   if getattr(field, "auto_now", False) and field not in chosen]
        assignments = ", ".join(f'"{field.column}" = %s' for field in chosen)
        cached = _UPDATE_SQL[key] = (
            f'UPDATE "{meta.db_table}" SET {assignments} WHERE "{meta.pk.column}" = %s RETURNING "{meta.pk.column}"',
            chosen,
        )
    sql, chosen = cached
    connection = connections[DEFAULT_DB_ALIAS]
    values = [field.get_db_prep_save(field.pre_save(obj, False), connection) for field in chosen]
    return sql, [*values, obj.pk]
