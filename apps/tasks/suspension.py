"""Suspending running generations and queueing them again with their progress.

Preemption and time slicing (docs/scheduling.md) share one mechanism. The
scheduler asks a running task to give its slot back (``request_suspend``: a
flag on the row and a wake-up to the workers); the worker's lease keeper
passes the ask to the task's adapter, which stops at its next token boundary
with a checkpoint; the worker then queues the task again with its progress
(``suspend_task``). A worker whose time slice ran out does the same on its
own (``waiting_for_slot`` says when another task should have the slot).

Progress is the text streamed so far and the adapter's checkpoint (which may
hold generated tokens), encrypted with the tenant's key, and the count of
completion tokens generated (a plain number). The next claim resumes the same
attempt from it (apps.tasks.statements.claim does not count a resume as an
attempt), so the stream continues with the next seq; a retry (a failed or
lost attempt) drops it and starts over, as its ``restart`` event says.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.core import notify
from apps.core.priorities import CLASSES
from apps.tasks import lifecycle, metrics
from apps.tasks.models import Task, TaskState

logger = logging.getLogger(__name__)

# apps.core.notify channel: the scheduler asked running tasks to suspend (committed before
# the wake-up); payload: SUSPEND_PAYLOAD_PREFIX and their ids, comma-separated (a wake-up
# payload is one short line: a few per message). The prefix tells the workers' lease
# keepers, which also hear cancels (one id), that the ask itself is in the payload.
SUSPEND_CHANNEL = "task-suspend"
SUSPEND_PAYLOAD_PREFIX = "suspend:"
_IDS_PER_WAKE_UP = 12


class SuspendReason(StrEnum):
    PREEMPTED = "preempted"  # a task that outranks it waited for its slot
    TIME_SLICE = "time_slice"  # its time slice ended while a task of its class waited


@dataclass(frozen=True)
class Progress:
    """A suspended generation's progress, as its worker left it."""

    text: str  # everything streamed so far
    checkpoint: dict[str, Any]  # the adapter's (apps.catalog.adapters.Suspended)
    completion_tokens: int
    first_token_at: datetime | None = None  # its first text, kept for the time to first token


def suspensions_in(payloads: Iterable[str]) -> set[str]:
    """The task ids a task-suspend wake-up's payloads ask to suspend (other payloads: none)."""
    return {
        task_id for payload in payloads if payload.startswith(SUSPEND_PAYLOAD_PREFIX)
        for task_id in payload.removeprefix(SUSPEND_PAYLOAD_PREFIX).split(",")
    }


def read_progress(task: Task) -> Progress | None:
    """The progress a suspended task resumes from, or None: it starts from the beginning."""
    if task.progress_ciphertext is None:
        return None
    saved = task.tenant.cipher.decrypt_json(bytes(task.progress_ciphertext))
    first = saved.get("first_token_at")
    return Progress(
        text=saved["text"],
        checkpoint=saved["checkpoint"],
        completion_tokens=task.progress_tokens,
        first_token_at=parse_datetime(first) if first else None,
    )


def request_suspend(task_ids: Collection[uuid.UUID]) -> list[uuid.UUID]:
    """Ask the workers running ``task_ids`` to suspend them at their next token
    boundary; the ids asked now (running, no cancel or suspension asked yet).

    The workers' lease keepers learn it at once from the wake-up, or at their
    next renewal (apps.runtime.leases) if the wake-up is lost."""
    candidates = Task.objects.filter(
        pk__in=list(task_ids), state=TaskState.RUNNING, cancel_requested=False, suspend_requested=False
    )
    asked = list(candidates.values_list("pk", flat=True))
    if not asked:
        return []
    Task.objects.filter(pk__in=asked, state=TaskState.RUNNING).update(suspend_requested=True)
    for start in range(0, len(asked), _IDS_PER_WAKE_UP):
        payload = SUSPEND_PAYLOAD_PREFIX + ",".join(str(task_id) for task_id in asked[start:start + _IDS_PER_WAKE_UP])
        transaction.on_commit(partial(notify.wake, SUSPEND_CHANNEL, payload), robust=True)
    return asked


def suspend_task(task: Task, progress: Progress, reason: SuspendReason) -> bool:
    """Queue a running attempt's task again with its progress; False when this attempt
    no longer owns it, or a cancel was asked for (the caller then ends it cancelled).

    Kept in its place among its flow's tasks when preempted (it keeps its arrival),
    put at the back of the line when its time slice ended (round robin)."""
    now = timezone.now()
    saved = {
        "text": progress.text,
        "checkpoint": progress.checkpoint,
        "first_token_at": progress.first_token_at.isoformat() if progress.first_token_at else None,
    }
    counters = (
        {"preemptions": F("preemptions") + 1} if reason == SuspendReason.PREEMPTED
        else {"slices": F("slices") + 1, "turn_at": now}
    )
    with transaction.atomic():
        suspended = Task.objects.filter(
            pk=task.pk, state=TaskState.RUNNING, attempt=task.attempt, cancel_requested=False, erased_at=None
        ).update(
            state=TaskState.QUEUED,
            lease_expires_at=None,
            worker_name="",
            dispatched_at=None,
            suspend_requested=False,
            progress_ciphertext=task.tenant.cipher.encrypt_json(saved),
            progress_tokens=progress.completion_tokens,
            **counters,
        )
        if suspended:
            lifecycle.announce_ready()  # the dispatcher hands out the freed slot and, later, this task
    if suspended:
        metrics.count_suspension(task, reason)
        logger.info("attempt %d suspended (%s) after %d completion tokens",
                    task.attempt, reason, progress.completion_tokens)
    return bool(suspended)


def waiting_for_slot(task: Task) -> bool:
    """Whether a task of ``task``'s model (or its pinned version) at ``task``'s class
    or above waits for a slot: a running generation whose time slice ended then
    gives its slot up. One indexed query, made once per time slice."""
    at_or_above = CLASSES[: CLASSES.index(task.priority) + 1]
    return Task.objects.filter(
        model_id=task.model_id, model_version_id=task.model_version_id, state=TaskState.QUEUED,
        dispatched_at__isnull=True, priority__in=at_or_above,
    ).exists()
