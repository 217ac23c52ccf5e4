"""Handing queued tasks to Huey: onto their model's queue (apps.scheduler.queues),
which only the workers hosting that model consume.

Huey's queue carries task ids only; the database stays the source of truth,
so a message lost with a crashed queue is re-sent by ``redispatch_stale`` and a
duplicate is harmless (the worker's claim is a conditional UPDATE). Huey runs
higher priority first; the platform's classes map onto it here.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings

from apps.scheduler.queues import model_queue
from apps.tasks import services as task_services
from apps.tasks.models import Priority, Task

logger = logging.getLogger(__name__)

HUEY_PRIORITY = {Priority.INTERACTIVE: 20, Priority.NORMAL: 10, Priority.BATCH: 0}


def dispatch_task(task_id: uuid.UUID, priority: str) -> None:
    # Looked up here rather than passed in: every caller (submission, retry,
    # reaper, re-dispatch) then reaches the right queue the same way.
    model_name = Task.objects.filter(pk=task_id).values_list("model__name", flat=True).first()
    if model_name is None:
        logger.warning("not dispatching task %s: it no longer exists", task_id)
        return
    model_queue(model_name).enqueue(task_id, priority=HUEY_PRIORITY.get(priority, 10))
    task_services.mark_dispatched(task_id)


def redispatch_stale() -> int:
    """Re-send queued tasks whose queue message may have been lost; returns how many."""
    stale = task_services.stale_queued_tasks(timedelta(seconds=settings.DISPATCH_STALE_SECONDS))
    for task in stale:
        dispatch_task(task.id, task.priority)
    if stale:
        logger.info("re-dispatched %d queued tasks", len(stale))
    return len(stale)


def reap_and_requeue() -> int:
    """Requeue the tasks of dead workers; returns how many were requeued."""
    requeued, failed = task_services.reap_expired_leases()
    for task in requeued:
        dispatch_task(task.id, task.priority)
    if requeued or failed:
        logger.warning("lease reaper: %d requeued, %d failed after the last attempt", len(requeued), failed)
    return len(requeued)
