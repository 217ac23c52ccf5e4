"""The worker's statements on a task, written by hand (apps.tasks.services and
apps.tasks.dependencies run them).

Claim: the conditional UPDATE that takes the lease returns the task with its
tenant, model and version, so a claim is one statement where it was an UPDATE
and a three-table SELECT. Finish: the conditional UPDATE that records the end
decides, in the same statement, whether a cancel asked for meanwhile wins,
and returns what it wrote, so the worker needs no read before it either.

Both are built once per process and database (the ORM compiles a query in
about 1 ms of CPU here; a cursor runs the same SQL in about 0.1 ms) and run
on PostgreSQL and on SQLite ≥ 3.35 alike (RETURNING; the related rows come
through scalar subqueries, since SQLite's RETURNING may not name a joined table).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper

from apps.catalog.models import LLMModel, ModelVersion
from apps.core.fields import column_of, concrete_field, foreign_key
from apps.core.rows import ModelColumns, quote, reader
from apps.tasks.models import EndReason, Task, TaskDependency, TaskState
from apps.tenants.models import Tenant


def _prep(name: str, value: Any) -> Any:
    """``value`` as the ORM would send it for Task's field ``name``."""
    return concrete_field(Task, name).get_db_prep_save(value, connection)


@dataclass(frozen=True)
class _Claim:
    sql: str
    task: ModelColumns
    related: tuple[tuple[str, ModelColumns], ...]  # (Task's field name, the columns of its row)


@functools.cache
def _claim(vendor: str, alias: str) -> _Claim:
    db: BaseDatabaseWrapper = connection
    task_columns = ModelColumns(Task, db)
    table = Task._meta.db_table
    related = tuple(
        (name, ModelColumns(model, db))
        for name, model in (("tenant", Tenant), ("model", LLMModel), ("model_version", ModelVersion))
    )
    returning = task_columns.own() + [
        item for name, columns in related for item in columns.through(table, column_of(Task, name))
    ]
    q = functools.partial(quote, db)
    sql = (
        # A suspended task's progress resumes the same attempt (apps.tasks.suspension).
        f"UPDATE {q(table)} SET {q('state')} = %s, "
        f"{q('attempt')} = CASE WHEN {q('progress_ciphertext')} IS NULL THEN {q('attempt')} + 1 "
        f"ELSE {q('attempt')} END, "
        f"{q('worker_name')} = %s, {q('started_at')} = %s, {q('lease_expires_at')} = %s "
        f"WHERE {q('id')} = %s AND {q('state')} = %s "
        # A suspended task resumes only from the dispatch that handed it out again: a queue
        # message left from before its suspension (a duplicate the reconciler enqueued, a
        # redelivery) must not take a slot out of the policy's order.
        f"AND ({q('progress_ciphertext')} IS NULL OR {q('dispatched_at')} IS NOT NULL) "
        f"RETURNING {', '.join(returning)}"
    )
    return _Claim(sql, task_columns, related)


def claim(task_id: Any, worker_name: str, now: datetime, lease_expires_at: datetime) -> Task | None:
    """Take the lease on a queued task; the task with tenant, model and version loaded, or None
    (not queued, or suspended and not handed out again yet)."""
    statement = _claim(connection.vendor, connection.alias)
    with connection.cursor() as cursor:
        cursor.execute(
            statement.sql,
            [
                TaskState.RUNNING,
                _prep("worker_name", worker_name),
                _prep("started_at", now),
                _prep("lease_expires_at", lease_expires_at),
                _prep("id", task_id),
                TaskState.QUEUED,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(statement.task)
    task = statement.task.build(row[:width], connection.alias)
    assert isinstance(task, Task)
    start = width
    loaded: dict[str, Any] = {}
    for name, columns in statement.related:
        loaded[name] = columns.build(row[start:start + len(columns)], connection.alias)
        start += len(columns)
        foreign_key(Task, name).set_cached_value(task, loaded[name])
    version = loaded["model_version"]
    if version is not None and version.model_id == task.model_id:
        foreign_key(ModelVersion, "model").set_cached_value(version, loaded["model"])
    return task


@dataclass(frozen=True)
class Ended:
    """What a finish wrote: the end state, and the reason when it is not a success."""

    state: str
    error_code: str
    error_message: str


@functools.cache
def _finish_sql(vendor: str, alias: str) -> str:
    q = functools.partial(quote, connection)
    cancelled = q("cancel_requested")
    return (
        f"UPDATE {q(Task._meta.db_table)} SET "
        # cancel_wins: a cancel asked for while it ran ends it cancelled, whatever it produced.
        f"{q('state')} = CASE WHEN %s AND {cancelled} THEN %s ELSE %s END, "
        f"{q('error_code')} = CASE WHEN %s AND {cancelled} THEN %s ELSE %s END, "
        f"{q('error_message')} = CASE WHEN %s AND {cancelled} THEN %s ELSE %s END, "
        f"{q('finished_at')} = %s, {q('lease_expires_at')} = NULL, "
        f"{q('progress_ciphertext')} = NULL, {q('suspend_requested')} = %s, "
        f"{q('prompt_tokens')} = COALESCE(%s, {q('prompt_tokens')}), "
        f"{q('completion_tokens')} = COALESCE(%s, {q('completion_tokens')}), "
        # An erased task keeps no output, even one that was being generated.
        f"{q('output_ciphertext')} = CASE WHEN {q('erased_at')} IS NULL THEN %s ELSE {q('output_ciphertext')} END, "
        f"{q('first_token_at')} = %s "
        f"WHERE {q('id')} = %s AND {q('state')} = %s AND {q('attempt')} = %s "
        f"RETURNING {q('state')}, {q('error_code')}, {q('error_message')}"
    )


def finish(
    task: Task,
    *,
    state: str,
    error_code: str,
    error_message: str,
    finished_at: datetime,
    usage: dict[str, int] | None,
    output_ciphertext: bytes,
    cancel_wins: bool,
    first_token_at: datetime | None = None,
) -> Ended | None:
    """Record the end of ``task``'s attempt; what was written, or None when the attempt
    no longer owns the task."""
    wins = _prep("cancel_requested", cancel_wins)
    cancel_code, cancel_message = EndReason.CANCELLED.value, str(EndReason.CANCELLED.label)
    with connection.cursor() as cursor:
        cursor.execute(
            _finish_sql(connection.vendor, connection.alias),
            [
                wins, TaskState.CANCELLED, state,
                wins, cancel_code, error_code,
                wins, cancel_message, error_message,
                _prep("finished_at", finished_at),
                _prep("suspend_requested", False),
                None if usage is None else usage["prompt_tokens"],
                None if usage is None else usage["completion_tokens"],
                _prep("output_ciphertext", output_ciphertext),
                _prep("first_token_at", first_token_at),
                _prep("id", task.pk), TaskState.RUNNING, task.attempt,
            ],
        )
        row = cursor.fetchone()
    return None if row is None else Ended(*row)


@functools.cache
def _children_sql(vendor: str, alias: str) -> str:
    q = functools.partial(quote, connection)
    task, link = q(Task._meta.db_table), q(TaskDependency._meta.db_table)
    task_id = f"{task}.{q(column_of(Task, 'id'))}"
    return (
        f"SELECT {task_id} FROM {task} JOIN {link} ON {link}.{q(column_of(TaskDependency, 'child'))} = {task_id} "
        f"WHERE {link}.{q(column_of(TaskDependency, 'parent'))} = %s AND {task}.{q(column_of(Task, 'state'))} = %s "
        f"ORDER BY {task}.{q(column_of(Task, 'critical_path_rank'))} DESC, {task}.{q(column_of(Task, 'created_at'))}"
    )


def waiting_children(parent_id: Any) -> list[Any]:
    """The ids of ``parent_id``'s children still waiting, longest critical path first.

    Run after every task's end, and most tasks have no children: through a
    cursor it costs a tenth of the ORM query it replaces."""
    read = reader(Task, "id", connection)
    with connection.cursor() as cursor:
        cursor.execute(_children_sql(connection.vendor, connection.alias), [_prep("id", parent_id), TaskState.WAITING])
        return [read(row[0]) for row in cursor.fetchall()]


@functools.cache
def _raise_ranks_sql(vendor: str, alias: str) -> str:
    q = functools.partial(quote, connection)
    task, link = q(Task._meta.db_table), q(TaskDependency._meta.db_table)
    task_id, state, rank = (q(column_of(Task, name)) for name in ("id", "state", "critical_path_rank"))
    child, parent = q(column_of(TaskDependency, "child")), q(column_of(TaskDependency, "parent"))
    # ancestor(id, reach): each ancestor with a rank one path to it asks for;
    # UNION (not ALL) keeps each (id, reach) once, so a diamond is not walked twice.
    # The seed is cast: PostgreSQL types the recursive column by it. The state
    # is a scalar subquery, looked up by primary key for each row of the walk:
    # as a join, PostgreSQL may read every waiting task at each level.
    return (
        f"WITH RECURSIVE ancestor(id, reach) AS ("
        f"SELECT {link}.{parent}, CAST(%s AS INTEGER) FROM {link} WHERE {link}.{child} = %s "
        f"UNION "
        f"SELECT {link}.{parent}, ancestor.reach + 1 FROM ancestor "
        f"JOIN {link} ON {link}.{child} = ancestor.id "
        f"WHERE ancestor.reach < %s "
        f"AND (SELECT {task}.{state} FROM {task} WHERE {task}.{task_id} = ancestor.id) = %s"
        f") "
        f"UPDATE {task} SET {rank} = best.reach "
        f"FROM (SELECT id, MAX(reach) AS reach FROM ancestor GROUP BY id) AS best "
        f"WHERE {task}.{task_id} = best.id AND {task}.{state} IN (%s, %s) AND {task}.{rank} < best.reach"
    )


def raise_ancestor_ranks(child_id: Any, rank: int, horizon: int) -> int:
    """Raise the critical-path ranks of ``child_id``'s not-yet-started ancestors
    to at least their distance from it plus ``rank`` (its parents: ``rank`` + 1),
    counting no rank past ``horizon``; how many rows changed.

    One statement whatever the graph's size: a recursive CTE walks up through
    waiting tasks only (a queued task's parents have all succeeded) and stops
    ``horizon`` levels up, and one UPDATE … FROM raises the ranks that are lower.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _raise_ranks_sql(connection.vendor, connection.alias),
            [
                min(rank + 1, horizon), _prep("id", child_id), horizon, TaskState.WAITING,
                TaskState.WAITING, TaskState.QUEUED,
            ],
        )
        return cursor.rowcount
