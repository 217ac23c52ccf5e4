"""The dispatcher's reads, written by hand (apps.scheduler.dispatcher runs them).

A dispatch round runs after every submission: at low load its fixed cost is
paid per task. Through the ORM its reads cost about 1 ms of CPU each to
compile here; the same SQL through a cursor about 0.1 ms (docs/benchmarks.md).
The statements are built once per process and database from the models'
metadata and run on PostgreSQL and SQLite alike; values come back through the
fields' own converters, as the ORM would return them.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, models

from apps.catalog.models import LLMModel, ModelVersion
from apps.core.fields import column_of, concrete_field
from apps.core.rows import reader
from apps.tasks.models import Task, TaskState
from apps.tenants.models import Plan, TaskCharge, Tenant
from apps.workers.models import Placement, Worker, WorkerState


@dataclass(frozen=True)
class ReadyTask:
    id: uuid.UUID
    model_id: uuid.UUID
    tenant_id: uuid.UUID
    priority: str
    max_tokens: int
    queued_at: datetime | None
    critical_path_rank: int
    model_name: str
    version: str | None
    reserved_tokens: int | None  # the admission's reservation (None: none was made)
    weight: float | None  # the tenant's plan's fair-share weight
    max_running: int | None  # the tenant's plan's running cap
    tenant_active: bool  # False: the tenant is paused and its tasks wait
    request_id: str  # the submitting request's id, for the dispatch's log line
    progress_tokens: int  # completion tokens generated before its last suspension (0: none)
    turn_at: datetime | None  # its place in line when its time slice ended (None: queued_at)
    adapter: str  # its model's adapter (whether its generations can be preempted)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model: type[models.Model]) -> str:
    return _q(model._meta.db_table)


def _col(alias: str, model: type[models.Model], name: str) -> str:
    return f"{alias}.{_q(column_of(model, name))}"


def _prep(model: type[models.Model], name: str, value: Any) -> Any:
    return concrete_field(model, name).get_db_prep_value(value, connection)


def _rows(sql: str, params: Sequence[Any], readers: Sequence[Callable[[Any], Any]]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        fetched = cursor.fetchall()
    return [tuple(read(value) for read, value in zip(readers, row, strict=True)) for row in fetched]


_READY_FIELDS: tuple[tuple[type[models.Model], str, str], ...] = (
    (Task, "id", "t"), (Task, "model", "t"), (Task, "tenant", "t"), (Task, "priority", "t"),
    (Task, "max_tokens", "t"), (Task, "queued_at", "t"), (Task, "critical_path_rank", "t"),
    (LLMModel, "name", "m"), (ModelVersion, "version", "v"), (TaskCharge, "reserved_tokens", "c"),
    (Plan, "weight", "p"), (Plan, "max_running", "p"), (Tenant, "active", "n"), (Task, "request_id", "t"),
    (Task, "progress_tokens", "t"), (Task, "turn_at", "t"), (LLMModel, "adapter", "m"),
)


@functools.cache
def _ready_sql(vendor: str) -> tuple[str, tuple[Callable[[Any], Any], ...]]:
    select = []
    for model, name, alias in _READY_FIELDS:
        if alias == "c":  # the reservation: a scalar subquery (the charge row is keyed by task id, no relation)
            select.append(
                f"(SELECT {_col('c', TaskCharge, name)} FROM {_table(TaskCharge)} c "
                f"WHERE {_col('c', TaskCharge, 'task_id')} = t.{_q(column_of(Task, 'id'))})"
            )
        else:
            select.append(_col(alias, model, name))
    sql = (
        f"SELECT {', '.join(select)} FROM {_table(Task)} t "
        f"JOIN {_table(LLMModel)} m ON m.{_q(column_of(LLMModel, 'id'))} = {_col('t', Task, 'model')} "
        f"LEFT JOIN {_table(ModelVersion)} v ON v.{_q(column_of(ModelVersion, 'id'))} = "
        f"{_col('t', Task, 'model_version')} "
        f"JOIN {_table(Tenant)} n ON n.{_q(column_of(Tenant, 'id'))} = {_col('t', Task, 'tenant')} "
        f"JOIN {_table(Plan)} p ON p.{_q(column_of(Plan, 'id'))} = {_col('n', Tenant, 'plan')} "
        f"WHERE {_col('t', Task, 'state')} = %s AND {_col('t', Task, 'dispatched_at')} IS NULL"
    )
    return sql, tuple(reader(model, name, connection) for model, name, _ in _READY_FIELDS)


def ready_tasks() -> list[ReadyTask]:
    """Every ready task (queued, not yet handed to a queue), with what a round needs to place it."""
    sql, readers = _ready_sql(connection.vendor)
    return [ReadyTask(*row) for row in _rows(sql, [TaskState.QUEUED], readers)]


@functools.cache
def _in_flight_sql(vendor: str) -> tuple[str, tuple[Callable[[Any], Any], ...]]:
    state, dispatched = _col("t", Task, "state"), _col("t", Task, "dispatched_at")
    model, tenant = _col("t", Task, "model"), _col("t", Task, "tenant")
    sql = (
        f"SELECT {model}, {tenant}, COUNT(*) FROM {_table(Task)} t "
        f"WHERE {state} = %s OR ({state} = %s AND {dispatched} IS NOT NULL) GROUP BY {model}, {tenant}"
    )
    return sql, (reader(Task, "model", connection), reader(Task, "tenant", connection), int)


def in_flight() -> list[tuple[uuid.UUID, uuid.UUID, int]]:
    """(model id, tenant id, count) of the tasks running or handed to a queue."""
    sql, readers = _in_flight_sql(connection.vendor)
    return _rows(sql, [TaskState.RUNNING, TaskState.QUEUED], readers)  # type: ignore[return-value]


@functools.cache
def _slots_sql(vendor: str) -> tuple[str, tuple[Callable[[Any], Any], ...]]:
    model = _col("pl", Placement, "model")
    sql = (
        f"SELECT {model}, SUM({_col('w', Worker, 'slots')}) FROM {_table(Worker)} w "
        f"JOIN {_table(Placement)} pl ON {_col('pl', Placement, 'worker')} = w.{_q(column_of(Worker, 'id'))} "
        f"WHERE {_col('w', Worker, 'state')} = %s AND {_col('w', Worker, 'last_heartbeat_at')} >= %s "
        f"GROUP BY {model}"
    )
    return sql, (reader(Placement, "model", connection), int)


def slots_by_model(alive_since: datetime) -> dict[uuid.UUID, int]:
    """The slots of the active workers that heartbeat since ``alive_since``, by model placed on them."""
    sql, readers = _slots_sql(connection.vendor)
    params = [WorkerState.ACTIVE, _prep(Worker, "last_heartbeat_at", alive_since)]
    return dict(_rows(sql, params, readers))  # type: ignore[arg-type]


@functools.cache
def _usage_sql(vendor: str, count: int, states: int) -> tuple[str, tuple[Callable[[Any], Any], ...]]:
    sql = (
        f"SELECT {_col('t', Task, 'id')}, {_col('t', Task, 'prompt_tokens')}, {_col('t', Task, 'completion_tokens')} "
        f"FROM {_table(Task)} t WHERE {_col('t', Task, 'id')} IN ({', '.join(['%s'] * count)}) "
        f"AND {_col('t', Task, 'state')} IN ({', '.join(['%s'] * states)})"
    )
    return sql, (reader(Task, "id", connection), reader(Task, "prompt_tokens", connection),
                 reader(Task, "completion_tokens", connection))


def ended_usage(task_ids: Sequence[uuid.UUID], terminal_states: Collection[str]) -> list[tuple[uuid.UUID, int, int]]:
    """(id, prompt tokens, completion tokens) of those of ``task_ids`` that have ended."""
    rows: list[tuple[uuid.UUID, int, int]] = []
    states = sorted(terminal_states)
    # In parts: one statement's parameters are bounded (SQLite: 32,766).
    for start in range(0, len(task_ids), 500):
        part = task_ids[start:start + 500]
        sql, readers = _usage_sql(connection.vendor, len(part), len(states))
        rows += _rows(sql, [*(_prep(Task, "id", task_id) for task_id in part), *states], readers)  # type: ignore[arg-type]
    return rows


@dataclass(frozen=True)
class SlotHolder:
    """A task holding one of its model's slots: running, or handed to a queue (``started_at`` None)."""

    id: uuid.UUID
    model_id: uuid.UUID
    tenant_id: uuid.UUID
    priority: str
    state: str
    started_at: datetime | None  # the start of its current run segment (every claim sets it)
    preemptions: int
    suspend_requested: bool
    cancel_requested: bool
    weight: float | None  # the tenant's plan's fair-share weight


_HOLDER_FIELDS: tuple[tuple[type[models.Model], str, str], ...] = (
    (Task, "id", "t"), (Task, "model", "t"), (Task, "tenant", "t"), (Task, "priority", "t"), (Task, "state", "t"),
    (Task, "started_at", "t"), (Task, "preemptions", "t"), (Task, "suspend_requested", "t"),
    (Task, "cancel_requested", "t"), (Plan, "weight", "p"),
)


@functools.cache
def _holders_sql(vendor: str, count: int) -> tuple[str, tuple[Callable[[Any], Any], ...]]:
    state, dispatched = _col("t", Task, "state"), _col("t", Task, "dispatched_at")
    sql = (
        f"SELECT {', '.join(_col(alias, model, name) for model, name, alias in _HOLDER_FIELDS)} "
        f"FROM {_table(Task)} t "
        f"JOIN {_table(Tenant)} n ON n.{_q(column_of(Tenant, 'id'))} = {_col('t', Task, 'tenant')} "
        f"JOIN {_table(Plan)} p ON p.{_q(column_of(Plan, 'id'))} = {_col('n', Tenant, 'plan')} "
        f"WHERE ({state} = %s OR ({state} = %s AND {dispatched} IS NOT NULL)) "
        f"AND {_col('t', Task, 'model')} IN ({', '.join(['%s'] * count)})"
    )
    return sql, tuple(reader(model, name, connection) for model, name, _ in _HOLDER_FIELDS)


def slot_holders(model_ids: Sequence[uuid.UUID]) -> list[SlotHolder]:
    """The tasks running or handed to a queue on ``model_ids``, with what preemption weighs.

    One statement for every model a round considers (their number is bounded by
    the models placed on live workers, far below a statement's parameter limit)."""
    if not model_ids:
        return []
    sql, readers = _holders_sql(connection.vendor, len(model_ids))
    params = [TaskState.RUNNING, TaskState.QUEUED, *(_prep(Task, "model", model_id) for model_id in model_ids)]
    return [SlotHolder(*row) for row in _rows(sql, params, readers)]
