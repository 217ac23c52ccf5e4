"""A model's fields by name, typed for code that writes its own SQL.

``Model._meta.get_field`` answers any name a query may use, reverse relations
included (``Field | ForeignObjectRel``), and a field's ``column`` is None for
a field without a column of its own. SQL built by hand (the hot path's
statements, the wait estimates) needs a concrete field with a column: these
helpers check that once, and fail with the name at fault otherwise.
"""

from __future__ import annotations

from typing import Any

from django.db import models


def concrete_field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    """``model``'s own field ``name`` (not a reverse relation)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise LookupError(f"{model.__name__}.{name} is a reverse relation, not a field of its table")
    return field


def column_of(model: type[models.Model], name: str) -> str:
    """The (unquoted) column of ``model``'s field ``name``."""
    column = concrete_field(model, name).column
    if column is None:
        raise LookupError(f"{model.__name__}.{name} has no column of its own")
    return column


def foreign_key(model: type[models.Model], name: str) -> models.ForeignKey[Any, Any]:
    """``model``'s foreign key ``name`` (it caches the row it points to)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.ForeignKey):
        raise LookupError(f"{model.__name__}.{name} is not a foreign key")
    return field
