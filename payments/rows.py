"""One-row INSERTs without the ORM's per-call SQL compilation, for the settlement hot path.

`Model.objects.create()` compiles its INSERT afresh on every call, which for a wide row
costs more Python than the INSERT itself. `insert` builds the statement once per model and runs it as a
prepared statement (portal/prepared.py), with each field's own `pre_save` and
`get_db_prep_save`, exactly the values the ORM would send; database triggers and
constraints apply as to any INSERT.
"""

import json
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import AutoField, Model
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

from portal import prepared

M = TypeVar("M", bound=Model)

_SQL: dict[type, tuple[str, list]] = {}


def _insert_sql(model: type[Model]) -> tuple[str, list]:
    cached = _SQL.get(model)
    if cached is None:
        meta = model._meta
        fields = [field for field in meta.concrete_fields if not isinstance(field, AutoField)]
        columns = ", ".join('"' + field.column + '"' for field in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        sql = f'INSERT INTO "{meta.db_table}" ({columns}) VALUES ({placeholders}) RETURNING "{meta.pk.column}"'  # noqa: S608 (names from the model; values are parameters)
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


def update_statement(obj: Model, fields: list[str]) -> tuple[str, list]:
    """UPDATE these fields of a saved `obj`, as `save(update_fields=...)` would (auto_now fields included):
    the statement and its parameters (`RETURNING` the pk), to run within `prepared.write_together`."""
    model = type(obj)
    key = (model, tuple(fields))
    cached = _UPDATE_SQL.get(key)
    if cached is None:
        meta = model._meta
        chosen = [meta.get_field(name) for name in fields]
        chosen += [field for field in meta.concrete_fields if getattr(field, "auto_now", False) and field not in chosen]
        assignments = ", ".join(f'"{field.column}" = %s' for field in chosen)
        cached = _UPDATE_SQL[key] = (
            f'UPDATE "{meta.db_table}" SET {assignments} WHERE "{meta.pk.column}" = %s RETURNING "{meta.pk.column}"',  # noqa: S608 (names from the models; values are parameters)
            chosen,
        )
    sql, chosen = cached
    connection = connections[DEFAULT_DB_ALIAS]
    values = [field.get_db_prep_save(field.pre_save(obj, False), connection) for field in chosen]
    return sql, [*values, obj.pk]


# --- Instances of rows read by hand-written SQL -------------------------------------------------

_PLAIN_FIELDS: dict[type, bool] = {}


def _plain(model: type[Model]) -> bool:
    """Whether every concrete field of `model` is read and written through Django's plain deferred
    attribute (no descriptor of its own that would transform the value, as a FileField's does)."""
    plain = _PLAIN_FIELDS.get(model)
    if plain is None:
        plain = _PLAIN_FIELDS[model] = all(
            type(model.__dict__.get(field.attname)) in (DeferredAttribute, ForeignKeyDeferredAttribute)
            for field in model._meta.concrete_fields
        )
    return plain


def loaded(model: type[M], attnames: list[str], values: list) -> M:
    """What `model.from_db(DEFAULT_DB_ALIAS, attnames, values)` gives, a row read from the database
    with these fields (any other deferred, loaded if read), except that each value goes to the field
    it is named with (from_db takes them in the model's field order, whatever the names' order).
    Built without `Model.__init__`, which from_db runs over every field, sending pre_init and
    post_init, a measurable share of a settlement request's CPU. With any
    pre_init or post_init receiver connected, or a field with a descriptor of its own, from_db it is."""
    if pre_init.receivers or post_init.receivers or not _plain(model):
        # from_db takes the values in the model's field order, whatever the order of the names.
        by_name = dict(zip(attnames, values, strict=True))
        ordered = [field.attname for field in model._meta.concrete_fields if field.attname in by_name]
        return model.from_db(DEFAULT_DB_ALIAS, ordered, [by_name[name] for name in ordered])
    instance = object.__new__(model)
    instance.__dict__.update(zip(attnames, values, strict=True))
    state = instance._state = ModelState()
    state.adding = False
    state.db = DEFAULT_DB_ALIAS
    return instance


def related(instance: Model, name: str, value: Model | None) -> None:
    """`instance.<name> = value` for a many-to-one field whose id `instance` already holds: the related
    object cached as the descriptor would cache it, without its checks (same database, same id)."""
    field = instance._meta.get_field(name)
    if getattr(instance, field.attname) != (None if value is None else value.pk):
        raise ValueError(f"{type(instance).__name__}.{name}: the object is not the one its id names")
    field.set_cached_value(instance, value)


# --- Reading a hand-written statement's row by column name -----------------------------------


def row_parts(row: dict) -> dict[str, dict]:
    """The row's `<part>__<field>` columns, by part: {"certificate": {"id": ..., "number": ...}, ...}."""
    parts: dict[str, dict] = {}
    for column, value in row.items():
        part, _, field = column.partition("__")
        if field:
            parts.setdefault(part, {})[field] = value
    return parts


def loaded_or_none(model: type[M], fields: dict) -> M | None:
    """A `model` instance holding `fields` (any other field deferred), or None if its id is NULL."""
    return None if fields["id"] is None else loaded(model, list(fields), list(fields.values()))


def json_value(value: object) -> Any:
    """A JSON column as Python (psycopg may hand it over parsed or as text)."""
    return json.loads(value) if isinstance(value, str | bytes) else value
