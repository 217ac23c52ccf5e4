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

from django.db.models import Sum

from apps.catalog.models import LLMModel
from apps.tasks.models import Task, TaskState
from apps.tasks.services import queue_position
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


def queue_stats(model: LLMModel) -> QueueStats:
    tasks = Task.objects.filter(model=model)
    recent = (
        tasks.filter(state=TaskState.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("started_at", "finished_at")[:SAMPLE]
    )
    durations = [(finished - started).total_seconds() for started, finished in recent]
    return QueueStats(
        queued=tasks.filter(state=TaskState.QUEUED).count(),
        running=tasks.filter(state=TaskState.RUNNING).count(),
        slots=workers_for_model(model).aggregate(total=Sum("slots"))["total"] or 0,
        mean_service_seconds=sum(durations) / len(durations) if durations else None,
    )


def task_wait(task: Task) -> dict[str, int | float | None]:
    """queue_position and estimated_start_seconds of a queued task (None when not queued)."""
    position = queue_position(task.id) if task.state == TaskState.QUEUED else None
    if position is None:
        return {"queue_position": None, "estimated_start_seconds": None}
    return {"queue_position": position, "estimated_start_seconds": queue_stats(task.model).start_after(position)}
