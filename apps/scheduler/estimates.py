"""Wait estimates from measured service times (a queueing model, not a promise).

A model's queue is served by c slots (the slots of the active workers placed
on it). Service time is the mean run time of its last SAMPLE finished tasks.
With every slot busy, completions arrive at c / mean per second (Little's
law), so a task with k tasks ahead of it beyond the free slots starts after
about k · mean / c seconds; with a free slot it starts at once. Unknown (None)
until the model has finished tasks and a worker serves it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, Sum

from apps.catalog.models import LLMModel
from apps.tasks.models import Task, TaskState
from apps.tasks.services import queued_ahead_of
from apps.workers.services import workers_for_model

SAMPLE = 50


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


def _counts(model_id, task: Task | None = None) -> dict[str, int]:
    """The model's queued and running tasks; with ``task``, also how many queued
    tasks run before it and whether it is still queued ("mine": 1 or 0).

    One query for what took four: a task's submission answers with its wait
    estimate, so this is on the path of every POST /api/v1/tasks.
    """
    extra = {}
    if task is not None:
        extra = {
            "ahead": Count("pk", filter=queued_ahead_of(task)),
            "mine": Count("pk", filter=Q(pk=task.pk, state=TaskState.QUEUED)),
        }
    # state__in first: the (state, …) index keeps this to the queued and running rows.
    return Task.objects.filter(state__in=(TaskState.QUEUED, TaskState.RUNNING), model_id=model_id).aggregate(
        queued=Count("pk", filter=Q(state=TaskState.QUEUED)),
        running=Count("pk", filter=Q(state=TaskState.RUNNING)),
        **extra,
    )


def queue_stats(model: LLMModel, counts: dict[str, int] | None = None) -> QueueStats:
    counts = counts or _counts(model.pk)
    recent = (
        Task.objects.filter(model=model, state=TaskState.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("started_at", "finished_at")[:SAMPLE]
    )
    durations = [(finished - started).total_seconds() for started, finished in recent]
    return QueueStats(
        queued=counts["queued"],
        running=counts["running"],
        slots=workers_for_model(model).aggregate(total=Sum("slots"))["total"] or 0,
        mean_service_seconds=sum(durations) / len(durations) if durations else None,
    )


def task_wait(task: Task) -> dict[str, int | float | None]:
    """queue_position and estimated_start_seconds of a queued task (None when not queued)."""
    if task.state == TaskState.QUEUED:
        counts = _counts(task.model_id, task)
        if counts["mine"]:  # still queued as the database sees it now
            position = counts["ahead"] + 1
            estimate = queue_stats(task.model, counts).start_after(position)
            return {"queue_position": position, "estimated_start_seconds": estimate}
    return {"queue_position": None, "estimated_start_seconds": None}
