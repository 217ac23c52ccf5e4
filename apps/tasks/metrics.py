"""Counting tasks' events into the platform's Prometheus series (apps.core.metrics).

Submissions and ends are counted after their transaction commits (lifecycle
hooks ``submitted`` and ``ended``, registered in ``TasksConfig.ready``), so a
rolled-back submission or end is never counted; a claim is counted where it
is made (``services.claim_task``), and the first token by the worker that
generates it (``apps.runtime.execution``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from apps.core import metrics
from apps.tasks.models import Task


def count_submitted(task: Task) -> None:
    metrics.tasks_submitted.labels(model=task.model.name, tenant=task.tenant.slug).inc()


def count_claim(task: Task) -> None:
    """A worker took the task: how long it waited since it became ready (each attempt;
    not a resumed suspension, whose wait since queued_at includes its running)."""
    if task.progress_ciphertext is None and task.queued_at is not None and task.started_at is not None:
        metrics.queue_wait.labels(model=task.model.name).observe(_seconds(task.queued_at, task.started_at))


def count_first_token(task: Task, at: datetime) -> None:
    """The attempt's first text, at ``at``: how long since the task became ready."""
    start = task.queued_at or task.started_at
    if start is not None:
        metrics.time_to_first_token.labels(model=task.model.name).observe(_seconds(start, at))


def count_suspension(task: Task, reason: str) -> None:
    metrics.task_suspensions.labels(model=task.model.name, reason=reason).inc()


def count_end(task_id: uuid.UUID, ended_task: Task | None) -> None:
    """A task ended: its outcome, its tokens, and (when it ran) its total time."""
    task = ended_task if ended_task is not None else _ended(task_id)
    if task is None:  # deleted meanwhile (its tenant was): nothing left to name it by
        return
    model, tenant = task.model.name, task.tenant.slug
    metrics.tasks_finished.labels(model=model, tenant=tenant, outcome=task.state).inc()
    if task.prompt_tokens:
        metrics.tokens_in.labels(model=model, tenant=tenant).inc(task.prompt_tokens)
    if task.completion_tokens:
        metrics.tokens_out.labels(model=model, tenant=tenant).inc(task.completion_tokens)
    if task.started_at is not None and task.finished_at is not None:
        metrics.task_duration.labels(model=model).observe(_seconds(task.created_at, task.finished_at))


def _ended(task_id: uuid.UUID) -> Task | None:
    fields = ("state", "prompt_tokens", "completion_tokens", "created_at", "started_at", "finished_at",
              "model__name", "tenant__slug")
    return Task.objects.select_related("model", "tenant").only(*fields).filter(pk=task_id).first()


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)
