"""Handing ready tasks to the workers, and telling the dispatcher a task is ready.

Queued tasks are "ready" until the dispatcher (apps.scheduler.dispatcher,
in the scheduler process) picks them by policy and hands them to their
model's queue, or their version's ("name@version", apps.scheduler.queues),
which only the workers hosting it consume. Huey's queues carry task ids only;
the database stays the source of truth: a message lost with a crashed queue
makes its task ready again after DISPATCH_STALE_SECONDS, and a duplicate is
harmless (the worker's claim is a conditional UPDATE).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings

from apps.scheduler import wakeup
from apps.scheduler.queues import model_queue, queue_spec
from apps.tasks import services as task_services
from apps.tasks.models import Priority, Task, TaskState

logger = logging.getLogger(__name__)

# Huey runs higher numbers first. The dispatcher already chose the order; this
# only keeps it when a worker finds several ids waiting on one queue.
# Keyed by str: routes carry the priority as the database returns it (a plain str).
HUEY_PRIORITY: dict[str, int] = {Priority.INTERACTIVE: 20, Priority.NORMAL: 10, Priority.BATCH: 0}


def hand_to_workers(
    task_id: uuid.UUID, route: tuple[str, str | None, str] | None = None, *, wake: bool = True
) -> bool:
    """Put a ready task's id on its queue; False when it is no longer ready.

    ``route``: the task's (model name, version or None, priority) when the caller
    has read them already (the dispatcher does, with the ready tasks); else read here.
    ``wake``: wake the queue's workers now; False when the caller wakes them
    itself (the dispatcher, once per queue and round).
    """
    found = route or Task.objects.filter(pk=task_id).values_list(
        "model__name", "model_version__version", "priority"
    ).first()
    if found is None or not task_services.claim_for_dispatch(task_id):
        return False
    model_name, version, priority = found
    spec = queue_spec(model_name, version)
    try:
        model_queue(spec).enqueue(task_id, priority=HUEY_PRIORITY.get(priority, 10))
    except Exception:
        task_services.undo_dispatch(task_id)
        raise
    if wake:
        wakeup.wake_queue_consumers(spec)
    return True


def redispatch_stale() -> int:
    """Make ready again the tasks whose queue message may have been lost; returns how many."""
    count = task_services.forget_stale_dispatches(timedelta(seconds=settings.DISPATCH_STALE_SECONDS))
    if count:
        logger.info("%d queued tasks were dispatched too long ago; they are ready again", count)
        wakeup.wake_dispatcher()
    return count


def requeue_lost_messages() -> int:
    """Put back on their queues the dispatched tasks whose message is gone (Redis
    restarted or flushed, a scheduler killed between marking a task dispatched
    and enqueuing it), in the order they were handed out; returns how many.

    The database says which tasks were handed to a queue and not yet claimed;
    each queue says which ids it holds. A task a worker took meanwhile (off the
    queue, not yet claimed) may be enqueued twice: harmless, the second claim
    finds it running (a conditional UPDATE) and does nothing.
    """
    dispatched = list(
        Task.objects.filter(state=TaskState.QUEUED, dispatched_at__isnull=False)
        .order_by("dispatched_at", "id")
        .values_list("id", "dispatched_at", "model__name", "model_version__version", "priority")
    )
    if not dispatched:
        return 0
    specs = {queue_spec(model_name, version) for _, _, model_name, version, _ in dispatched}
    waiting = {spec: model_queue(spec).task_ids() for spec in specs}
    lost = [row for row in dispatched if str(row[0]) not in waiting[queue_spec(row[2], row[3])]]
    if not lost:
        return 0
    # Read again after the queues: only those still dispatched as they were then.
    still = set(
        Task.objects.filter(
            pk__in=[task_id for task_id, *_ in lost], state=TaskState.QUEUED, dispatched_at__isnull=False
        ).values_list("id", "dispatched_at")
    )
    woken: set[str] = set()
    for task_id, dispatched_at, model_name, version, priority in lost:
        if (task_id, dispatched_at) in still:
            spec = queue_spec(model_name, version)
            model_queue(spec).enqueue(task_id, priority=HUEY_PRIORITY.get(priority, 10))
            woken.add(spec)
    for spec in woken:
        wakeup.wake_queue_consumers(spec)
    requeued = len([row for row in lost if row[:2] in still])
    if requeued:
        logger.warning("%d dispatched tasks were missing from their queues; enqueued again", requeued)
    return requeued


def reap_and_requeue() -> int:
    """Requeue the tasks of dead workers; returns how many were requeued."""
    requeued, failed = task_services.reap_expired_leases()
    if requeued:
        wakeup.wake_dispatcher()
    if requeued or failed:
        logger.warning("lease reaper: %d requeued, %d failed after the last attempt", len(requeued), failed)
    return len(requeued)
