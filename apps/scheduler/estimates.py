"""Wait estimates from measured service times (a queueing model, not a promise).

A model's queue is served by c slots (the slots of the active workers placed
on it). Service time is the mean run time of its last SAMPLE finished tasks.
With every slot busy, completions arrive at c / mean per second (Little's
law), so a task with k tasks ahead of it beyond the free slots starts after
about k · mean / c seconds; with a free slot it starts at once. Unknown (None)
until the model has finished tasks and a worker serves it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connections
from django.db.models import Sum
from django.utils.dateparse import parse_datetime

from apps.catalog.models import LLMModel
from apps.core import priorities
from apps.core.fields import column_of, concrete_field
from apps.tasks.models import Task, TaskState
from apps.workers.services import workers_for_model

SAMPLE = 50
# waits_of: up to this many asked tasks of one model are counted one by one.
FEW_ASKED = 8


@dataclass(frozen=True)
class QueueStats:
    queued: int
    running: int
    slots: int
    mean_service_seconds: float | None

    def start_after(self, position: int) -> float | None:
        """Estimated seconds until the task at ``position`` (1 = next) starts."""
        if self.slots == 0 or self.mean_service_seconds is None:
            return None
        ahead_beyond_free = position - max(0, self.slots - self.running)
        if ahead_beyond_free <= 0:
            return 0.0
        return round(ahead_beyond_free * self.mean_service_seconds / self.slots, 3)


# The two queries below run on every POST /api/v1/tasks (a submission answers
# with its wait estimate) and every status message of a waiting stream. They are
# plain SQL on purpose: building the equivalent ORM aggregate (four filtered
# counts) cost about 1.5 ms of CPU per call, ten times the query itself, and was
# the largest single cost of a submission (docs/benchmarks.md, end-to-end
# throughput). Columns come from the model's metadata, values go through the
# fields' own conversions, so the SQL runs on SQLite and PostgreSQL alike.


def _sql():
    """(connection, quoted column of a Task field, database value of a Task field)."""
    connection = connections[Task.objects.db]

    def column(name: str) -> str:
        return connection.ops.quote_name(column_of(Task, name))

    def value(name: str, python_value):
        return concrete_field(Task, name).get_db_prep_value(python_value, connection)

    return connection, column, value


def _counts(model_id, task: Task | None = None) -> dict[str, int]:
    """The model's queued and running tasks; with ``task``, also how many queued
    tasks run before it (a higher priority class, or its class and queued
    earlier) and whether it is still queued ("mine": 1 or 0). One query."""
    connection, column, value = _sql()
    state = column("state")
    select = [f"SUM(CASE WHEN {state} = %s THEN 1 ELSE 0 END)", f"SUM(CASE WHEN {state} = %s THEN 1 ELSE 0 END)"]
    params: list = [TaskState.QUEUED, TaskState.RUNNING]
    if task is not None:
        higher = priorities.CLASSES[: priorities.rank(task.priority)]
        ahead = f"({column('priority')} = %s AND {column('queued_at')} < %s)"
        ahead_params = [task.priority, value("queued_at", task.queued_at)]
        if higher:
            ahead = f"({column('priority')} IN ({', '.join(['%s'] * len(higher))}) OR {ahead})"
            ahead_params = [*higher, *ahead_params]
        select += [
            f"SUM(CASE WHEN {state} = %s AND {ahead} THEN 1 ELSE 0 END)",
            f"SUM(CASE WHEN {column('id')} = %s AND {state} = %s THEN 1 ELSE 0 END)",
        ]
        params += [TaskState.QUEUED, *ahead_params, value("id", task.pk), TaskState.QUEUED]
    # state first: the (state, …) index keeps this to the queued and running rows.
    sql = (
        f"SELECT {', '.join(select)} FROM {connection.ops.quote_name(Task._meta.db_table)} "
        f"WHERE {state} IN (%s, %s) AND {column('model')} = %s"
    )
    params += [TaskState.QUEUED, TaskState.RUNNING, value("model", model_id)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    names = ("queued", "running", "ahead", "mine")[: len(select)]
    return {name: int(count or 0) for name, count in zip(names, row, strict=True)}


def _as_datetime(raw: str | datetime) -> datetime:
    if isinstance(raw, datetime):
        return raw
    parsed = parse_datetime(raw)  # SQLite answers plain SQL with text
    if parsed is None:
        raise ValueError(f"not a date and time: {raw!r}")
    return parsed


def _mean_service_seconds(model_id) -> float | None:
    """Mean run time of the model's last SAMPLE succeeded tasks (None: none yet)."""
    connection, column, value = _sql()
    started, finished = column("started_at"), column("finished_at")
    sql = (
        f"SELECT {started}, {finished} FROM {connection.ops.quote_name(Task._meta.db_table)} "
        f"WHERE {column('model')} = %s AND {column('state')} = %s "
        f"AND {started} IS NOT NULL AND {finished} IS NOT NULL ORDER BY {finished} DESC LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value("model", model_id), TaskState.SUCCEEDED, SAMPLE])
        rows = cursor.fetchall()
    durations = [(_as_datetime(end) - _as_datetime(start)).total_seconds() for start, end in rows]
    return sum(durations) / len(durations) if durations else None


def queue_stats(model: LLMModel, counts: dict[str, int] | None = None) -> QueueStats:
    counts = counts or _counts(model.pk)
    return QueueStats(
        queued=counts["queued"],
        running=counts["running"],
        slots=workers_for_model(model).aggregate(total=Sum("slots"))["total"] or 0,
        mean_service_seconds=_mean_service_seconds(model.pk),
    )


def model_wait(model: LLMModel) -> float | None:
    """Seconds a task submitted now to ``model`` (normal class, behind every queued task)
    would wait to start: math.inf when no active worker serves it (drained, none placed),
    None when unknown (no finished task measured yet)."""
    stats = queue_stats(model)
    if stats.slots == 0:
        return math.inf
    return stats.start_after(stats.queued + 1)


def task_wait(task: Task) -> dict[str, int | float | None]:
    """queue_position and estimated_start_seconds of a queued task (None when not queued)."""
    if task.state == TaskState.QUEUED:
        counts = _counts(task.model_id, task)
        if counts["mine"]:  # still queued as the database sees it now
            position = counts["ahead"] + 1
            estimate = queue_stats(task.model, counts).start_after(position)
            return {"queue_position": position, "estimated_start_seconds": estimate}
    return {"queue_position": None, "estimated_start_seconds": None}


def waits_of(task_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[str, dict[str, int | float | None]]]:
    """Each task's state and wait (as ``task_wait`` gives it), for many tasks at once.

    For the streams of many waiting tasks (apps.streaming.status): one query for
    the tasks, then per model with queued tasks among them one read of its
    queued tasks' order keys and one ``queue_stats``, instead of a handful of
    queries per task. A task not found is left out. A model with at most
    FEW_ASKED of its queued tasks asked about gets a count per task instead:
    the cost is then bounded by min(asked tasks, the model's queue).
    """
    rows = list(Task.objects.filter(pk__in=list(task_ids)).values_list("pk", "state", "model_id"))
    result: dict[uuid.UUID, tuple[str, dict[str, int | float | None]]] = {
        pk: (state, {"queue_position": None, "estimated_start_seconds": None}) for pk, state, _ in rows
    }
    asked_queued: dict[uuid.UUID, list[uuid.UUID]] = {}
    for pk, state, model_id in rows:
        if state == TaskState.QUEUED:
            asked_queued.setdefault(model_id, []).append(pk)
    for model in LLMModel.objects.filter(pk__in=list(asked_queued)):
        asked = asked_queued[model.pk]
        if len(asked) <= FEW_ASKED:
            # A few tasks: a count each (task_wait), rather than reading a queue that may be long.
            for task in Task.objects.filter(pk__in=asked).select_related("model"):
                result[task.pk] = (task.state, task_wait(task))
            continue
        order = sorted(
            Task.objects.filter(model=model, state=TaskState.QUEUED).values_list("priority", "queued_at", "pk"),
            key=lambda row: (priorities.rank(row[0]), row[1], row[2]),  # the order _counts counts in
        )
        stats = queue_stats(model)
        for position, (_, _, pk) in enumerate(order, start=1):
            if pk in result:
                result[pk] = (TaskState.QUEUED, {"queue_position": position,
                                                 "estimated_start_seconds": stats.start_after(position)})
    return result
