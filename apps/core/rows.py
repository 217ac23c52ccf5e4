"""Model rows read by hand-written SQL, turned back into instances as the ORM would.

The hot path (a worker claiming and finishing a task) uses statements the
ORM cannot write: an ``UPDATE … RETURNING`` that hands back the row it changed,
with the rows it points to. Compiling an ORM query costs about 1 ms of CPU
here, the same SQL through a cursor about 0.1 ms (docs/benchmarks.md), so
these statements are built once per process and run through a cursor.

``ModelColumns`` names the columns of one model to put in a statement (the
model's own table, or another table's row reached by a scalar subquery, which
both PostgreSQL and SQLite ≥ 3.35 allow in RETURNING: SQLite's RETURNING may
not name a joined table) and builds the instance from the values the cursor
returns, through the same converters the ORM applies. ``insert`` writes a new
instance's row as ``save()`` would, without compiling the INSERT each time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from apps.core.fields import column_of, concrete_field

Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]


def quote(connection: BaseDatabaseWrapper, name: str) -> str:
    return connection.ops.quote_name(name)


class ModelColumns:
    """Every concrete column of ``model``, as SQL select items and back."""

    def __init__(self, model: type[models.Model], connection: BaseDatabaseWrapper) -> None:
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self._columns = [column_of(model, field.name) for field in self.fields]
        self._connection = connection
        self._converters: list[tuple[Any, list[Converter]]] = []
        for field in self.fields:
            column = field.get_col(model._meta.db_table)
            # The ORM's order (SQLCompiler.get_converters): the backend's, then the field's.
            converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            self._converters.append((column, converters))

    @property
    def _pk_index(self) -> int:
        return next(i for i, field in enumerate(self.fields) if field.primary_key)

    @property
    def table(self) -> str:
        return quote(self._connection, self.model._meta.db_table)

    def own(self, alias: str | None = None) -> list[str]:
        """Select items for this model's own table: ``"table"."column"``, or ``alias."column"``
        where the statement names the table by ``alias`` (the same table joined twice)."""
        table = self.table if alias is None else alias
        return [f"{table}.{quote(self._connection, column)}" for column in self._columns]

    def through(self, referrer_table: str, foreign_key_column: str) -> list[str]:
        """Select items reaching this model's row from another table's foreign key, one scalar
        subquery per column (NULL when the key is NULL)."""
        pk = quote(self._connection, self._columns[self._pk_index])
        key = f"{quote(self._connection, referrer_table)}.{quote(self._connection, foreign_key_column)}"
        return [
            f"(SELECT {self.table}.{quote(self._connection, column)} FROM {self.table} WHERE {self.table}.{pk} = {key})"
            for column in self._columns
        ]

    def build(self, values: Sequence[Any], db: str = "default") -> models.Model | None:
        """The instance from this model's values in a returned row (None if its key is NULL)."""
        converted = []
        for (column, converters), value in zip(self._converters, values, strict=True):
            for converter in converters:
                value = converter(value, column, self._connection)
            converted.append(value)
        if converted[self._pk_index] is None:
            return None
        return self.model.from_db(db, [field.attname for field in self.fields], converted)

    def __len__(self) -> int:
        return len(self.fields)


def reader(model: type[models.Model], name: str, connection: BaseDatabaseWrapper) -> Callable[[Any], Any]:
    """How a value of ``model``'s field ``name`` read by a cursor becomes what the ORM
    would return (SQLite, for one, answers a UUID as hex text and a time as a string)."""
    column = concrete_field(model, name).get_col(model._meta.db_table)
    converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)

    def convert(value: Any) -> Any:
        for converter in converters:
            value = converter(value, column, connection)
        return value

    return convert


@functools.cache
def _insert_sql(model: type[models.Model], vendor: str, alias: str) -> str:
    connection = connections[alias]
    fields = model._meta.concrete_fields
    for field in fields:
        # Values the database makes (an auto-increment key, a db_default, a generated column)
        # would have to come back with RETURNING, as Model.save() reads them: not done here.
        if field.db_returning or field.db_default is not models.NOT_PROVIDED or field.generated:
            raise TypeError(f"{model.__name__}.{field.name}: the database makes its value; save() it")
    columns = ", ".join(quote(connection, column_of(model, field.name)) for field in fields)
    placeholders = ", ".join("%s" for _ in fields)
    return f"INSERT INTO {quote(connection, model._meta.db_table)} ({columns}) VALUES ({placeholders})"


def insert(instance: models.Model, connection: BaseDatabaseWrapper) -> None:
    """Write the new ``instance``'s row as ``Model.save(force_insert=True)`` would: every
    concrete field through its ``pre_save`` and ``get_db_prep_save``, in one INSERT built
    once per model and database. No pre_save/post_save signals are sent: use it only for
    models nothing listens to (a model whose key the database makes is refused)."""
    model = type(instance)
    values = [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for field in model._meta.concrete_fields
    ]
    # As save() does: an error inside a transaction marks it for rollback.
    with transaction.mark_for_rollback_on_error(connection.alias), connection.cursor() as cursor:
        cursor.execute(_insert_sql(model, connection.vendor, connection.alias), values)
    instance._state.adding = False
    instance._state.db = connection.alias
