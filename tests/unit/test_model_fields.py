"""apps.core.fields: a model's fields by name for hand-written SQL, and the names it refuses."""

from __future__ import annotations

import pytest
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from apps.core.fields import column_of, concrete_field, foreign_key
from apps.tasks.models import Task


def test_a_field_and_its_column():
    assert concrete_field(Task, "state") is Task._meta.get_field("state")
    assert column_of(Task, "state") == "state"
    # A foreign key's column is its attname, not its name.
    assert column_of(Task, "model") == "model_id"


def test_a_reverse_relation_is_refused_by_name():
    with pytest.raises(LookupError, match=r"Task\.children"):
        concrete_field(Task, "children")
    with pytest.raises(LookupError, match=r"Task\.children"):
        column_of(Task, "children")


def test_foreign_key_answers_only_foreign_keys():
    field = foreign_key(Task, "tenant")
    assert isinstance(field, models.ForeignKey) and field is Task._meta.get_field("tenant")
    with pytest.raises(LookupError, match=r"Task\.state is not a foreign key"):
        foreign_key(Task, "state")


def test_an_unknown_name_is_refused_as_django_refuses_it():
    with pytest.raises(FieldDoesNotExist):
        column_of(Task, "no_such_field")
