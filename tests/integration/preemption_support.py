"""The dispatcher's side of preemption, driven step by step: a worker row whose slots
the round fills, and the worker's own transitions on a task — claimed (its run
segment starting when the test says), suspended with its progress, finished —
through the statements and services the runtime calls, without an adapter.

A round asks for suspensions with a flag on the task's row (apps.tasks.suspension);
``asked()`` reads them back.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from apps.tasks import statements
from apps.tasks.models import Task, TaskState
from apps.tasks.services import finish_task
from apps.tasks.suspension import Progress, SuspendReason, suspend_task
from apps.workers.services import register_worker

WORKER = "preemption-worker"


def worker(slots: int, model_names: list[str] | None = None) -> None:
    """A live worker with ``slots`` slots, placed on ``model_names`` (None: every model)."""
    register_worker(name=WORKER, host="h", pid=1, slots=slots, device_info={}, model_names=model_names)


def submit(api, prompt: str, model: str = "echo", **extra) -> uuid.UUID:
    created = api.post("/api/v1/tasks", {"model": model, "prompt": prompt, **extra})
    assert created.status == 201, created.body
    return uuid.UUID(created.body["id"])


def claim(task_id: uuid.UUID, seconds_ago: float = 60.0) -> Task:
    """The worker claims a handed-out task; its run segment started ``seconds_ago``."""
    now = timezone.now()
    task = statements.claim(task_id, WORKER, now - timedelta(seconds=seconds_ago), now + timedelta(hours=1))
    assert task is not None, f"task {task_id} could not be claimed"
    return task


def suspend(task: Task, completion_tokens: int, reason: SuspendReason = SuspendReason.PREEMPTED) -> None:
    """The worker suspends a running task after ``completion_tokens`` tokens in all."""
    progress = Progress(text="x " * completion_tokens, checkpoint={}, completion_tokens=completion_tokens)
    assert suspend_task(task, progress, reason)


def finish(task: Task, prompt_tokens: int, completion_tokens: int) -> None:
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    assert finish_task(task, state=TaskState.SUCCEEDED, output="done", usage=usage)


def asked() -> set[uuid.UUID]:
    """The tasks asked to suspend and not suspended yet."""
    return set(Task.objects.filter(suspend_requested=True).values_list("pk", flat=True))


def handed_out() -> set[uuid.UUID]:
    """The tasks handed to a queue and not claimed yet."""
    return set(Task.objects.filter(state=TaskState.QUEUED, dispatched_at__isnull=False).values_list("pk", flat=True))
