"""The model a submission names, read by hand (apps.catalog.services runs it).

Every submission resolves its model for its tenant: through the ORM a query
with a join on the grants, DISTINCT and the current version, and a second one
for a pinned version, about 1 ms of CPU each to compile here; the same SQL
through a cursor costs about 0.1 ms (docs/benchmarks.md). One statement,
built once per process and database, reads the model, its current version and
the pinned version, if one is asked for.

Who may use a model is ``LLMModelQuerySet.visible_to``'s rule, written again
here in SQL: enabled, and public or granted to the tenant
(tests/integration/test_model_statement.py holds the two to the same answers).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.db import connection, models

from apps.catalog.models import LLMModel, ModelVersion
from apps.core.fields import column_of, concrete_field, foreign_key
from apps.core.rows import ModelColumns, quote
from apps.tenants.models import Tenant


@dataclass(frozen=True)
class _ModelRead:
    sql: str
    model: ModelColumns
    version: ModelColumns


@functools.cache
def _model_read(vendor: str, alias: str, pinned: bool) -> _ModelRead:
    q = functools.partial(quote, connection)
    model, version = ModelColumns(LLMModel, connection), ModelColumns(ModelVersion, connection)
    grants = LLMModel._meta.get_field("allowed_tenants")
    assert isinstance(grants, models.ManyToManyField)
    grant_table = q(grants.m2m_db_table())

    def model_col(name: str) -> str:
        return f"{model.table}.{q(column_of(LLMModel, name))}"

    version_pk, version_model = q(column_of(ModelVersion, "id")), q(column_of(ModelVersion, "model"))
    current, wanted = q("current_version"), q("pinned_version")  # the version table, joined twice
    items = model.own() + version.own(current)
    joins = f"LEFT OUTER JOIN {version.table} {current} ON {current}.{version_pk} = {model_col('current_version')} "
    if pinned:
        items += version.own(wanted)
        joins += (
            f"LEFT OUTER JOIN {version.table} {wanted} ON {wanted}.{version_model} = {model_col('id')} "
            f"AND {wanted}.{q(column_of(ModelVersion, 'version'))} = %s "
        )
    # visible_to: enabled, and public or granted to the tenant (EXISTS where the ORM joins the
    # grants and takes DISTINCT: the same rows, and the name is unique).
    sql = (
        f"SELECT {', '.join(items)} FROM {model.table} {joins}"
        f"WHERE {model_col('name')} = %s AND {model_col('enabled')} = %s AND ({model_col('is_public')} = %s "
        f"OR EXISTS (SELECT 1 FROM {grant_table} WHERE {grant_table}.{q(grants.m2m_column_name())} = {model_col('id')} "
        f"AND {grant_table}.{q(grants.m2m_reverse_name())} = %s))"
    )
    return _ModelRead(sql, model, version)


def visible_model(tenant: Tenant, name: str, version: str | None = None) -> tuple[LLMModel, ModelVersion | None] | None:
    """The model named ``name`` that ``tenant`` may use, its current version loaded, or None;
    with ``version``, also that version of it (None when it has none by that label)."""
    read = _model_read(connection.vendor, connection.alias, version is not None)
    boolean = functools.partial(concrete_field(LLMModel, "enabled").get_db_prep_value, connection=connection)
    params: list[Any] = [] if version is None else [version]
    tenant_id = concrete_field(Tenant, "id").get_db_prep_value(tenant.pk, connection)
    params += [name, boolean(True), boolean(True), tenant_id]
    with connection.cursor() as cursor:
        cursor.execute(read.sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    width, version_width = len(read.model), len(read.version)
    model = read.model.build(row[:width], connection.alias)
    assert isinstance(model, LLMModel)
    current = _version_of(model, read.version.build(row[width:width + version_width], connection.alias))
    foreign_key(LLMModel, "current_version").set_cached_value(model, current)
    pinned = None
    if version is not None:
        pinned = _version_of(model, read.version.build(row[width + version_width:], connection.alias))
    return model, pinned


def _version_of(model: LLMModel, version: Any) -> ModelVersion | None:
    """``version`` (read with ``model``) with its model loaded: its spec needs the name."""
    if version is not None:
        assert isinstance(version, ModelVersion)
        if version.model_id == model.pk:
            foreign_key(ModelVersion, "model").set_cached_value(version, model)
    return version
