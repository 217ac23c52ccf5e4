"""Admission's read of the tasks table, written by hand (apps.scheduler.admission runs it).

Every admission with a queue cap counts the tenant's queued and waiting tasks
under its admission lock. Through the ORM that count costs about 1 ms of CPU
to compile here, the same SQL through a cursor about 0.1 ms
(docs/benchmarks.md): it is built once per process and database.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

from django.db import connection

from apps.core.fields import column_of, concrete_field
from apps.core.rows import quote
from apps.tasks.models import Task


@functools.cache
def _count_sql(vendor: str, alias: str, states: int) -> str:
    q = functools.partial(quote, connection)
    return (
        f"SELECT COUNT(*) FROM {q(Task._meta.db_table)} WHERE {q(column_of(Task, 'tenant'))} = %s "
        f"AND {q(column_of(Task, 'state'))} IN ({', '.join('%s' for _ in range(states))})"
    )


def tasks_in_states(tenant_id: Any, states: Collection[str]) -> int:
    """How many of the tenant's tasks are in one of ``states``
    (``Task.objects.for_tenant(tenant).filter(state__in=states).count()``)."""
    tenant = concrete_field(Task, "tenant").get_db_prep_value(tenant_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(_count_sql(connection.vendor, connection.alias, len(states)), [tenant, *states])
        row = cursor.fetchone()
    return row[0]
