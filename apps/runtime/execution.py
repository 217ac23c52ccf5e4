"""Running one task on this worker: claim, stream from the adapter, record.

At-least-once: a worker that dies mid-task loses its lease and the reaper
requeues the task; the attempt number makes sure only the current attempt can
record a result, so a task has exactly one recorded result.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.catalog.adapters import (
    AdapterConfigError,
    AdapterError,
    ChatMessage,
    GenerationRequest,
    ModelAdapter,
    Resume,
    Suspended,
    TextChunk,
    Usage,
)
from apps.core import logs
from apps.core.errors import unavailable_dependency
from apps.runtime.adapters import adapter_for, release_adapter
from apps.runtime.leases import KEEPER, Hold, LeaseKeeper
from apps.scheduler.wakeup import wake_dispatcher
from apps.streaming.events import SUSPENDED
from apps.streaming.services import open_publisher
from apps.tasks import metrics as task_metrics
from apps.tasks import services as task_services
from apps.tasks import suspension
from apps.tasks.fencing import StaleAttempt
from apps.tasks.models import EndReason, Task, TaskState
from apps.tasks.payloads import read_input
from apps.tasks.suspension import Progress, SuspendReason, read_progress

logger = logging.getLogger(__name__)

# A finished attempt whose end cannot be written (database down) retries this
# long, backing off from the first delay to the largest, before it gives up
# (the lease then lapses and the task runs again elsewhere).
RECORD_RETRY_FIRST_SECONDS = 0.5
RECORD_RETRY_MAX_DELAY_SECONDS = 5.0
RECORD_RETRY_LIMIT_SECONDS = 600.0


def worker_name() -> str:
    return settings.WORKER_NAME or f"{socket.gethostname()}:{os.getpid()}"


def build_request(task: Task, progress: Progress | None = None) -> GenerationRequest:
    """The adapter's request for ``task``; ``progress``: where its suspended generation
    goes on from (apps.tasks.suspension), None to start it."""
    payload = read_input(task) or {}
    messages = payload.get("messages")
    return GenerationRequest(
        # Each resumed segment is a request of its own to the adapter (an engine may keep
        # an aborted request's id for a while).
        request_id=f"{task.id}:{task.attempt}" + (f".{task.preemptions + task.slices}" if progress else ""),
        prompt=payload.get("prompt"),
        messages=tuple(ChatMessage(m["role"], m["content"]) for m in messages) if messages else None,
        max_tokens=task.max_tokens,
        temperature=task.temperature,
        top_p=task.top_p,
        stop=tuple(payload.get("stop") or ()),
        seed=task.seed,
        priority=task.priority,
        resume=None if progress is None else Resume(progress.text, progress.checkpoint, progress.completion_tokens),
    )


def execute_task(task_id: uuid.UUID, keeper: LeaseKeeper = KEEPER) -> None:
    """Run one task: ``keeper`` renews its lease and says when it must stop
    (a worker process's own keeper unless a test brings one).

    Every line logged meanwhile carries the task's id, and once it is claimed
    the id of the request that submitted it (apps.core.logs)."""
    with logs.bound(task_id=str(task_id)):
        task = task_services.claim_task(task_id, worker_name())
        if task is None:
            return  # cancelled, finished, or claimed by another worker: nothing to do
        with logs.bound(request_id=task.request_id):
            logger.info("attempt %d of %s %s", task.attempt, task.model.name,
                        "resumed" if task.progress_ciphertext is not None else "started")
            _run_claimed(task, keeper)


def _run_claimed(task: Task, keeper: LeaseKeeper) -> None:
    if task.erased_at is not None:
        task_services.finish_task(task, state=TaskState.CANCELLED, output="", usage=None,
                                  error_code=EndReason.ERASED, error_message=EndReason.ERASED.label)
        return
    try:
        # The version the task was given at submission, whatever the alias says now.
        adapter = adapter_for(task.model, task.model_version)
    except (AdapterConfigError, LookupError) as exc:
        task_services.finish_task(task, state=TaskState.FAILED, output="", usage=None,
                                  error_code=EndReason.MODEL_UNAVAILABLE, error_message=str(exc))
        return
    except AdapterError as exc:  # the model failed to load here (engine start, missing weights)
        _record_failure(task, exc, "")
        return
    try:
        _stream_and_record(task, adapter, keeper)
    except StaleAttempt:
        # Fenced: the task was requeued (this worker lost its lease: cut off, too slow
        # to renew) and a newer attempt owns it. Stop, and record nothing.
        logger.warning("attempt %d lost task %s to a newer attempt; its output is dropped", task.attempt, task.id)
    finally:
        release_adapter(adapter)  # a retired version is unloaded once its last stream ends


def _stream_and_record(task: Task, adapter: ModelAdapter, keeper: LeaseKeeper) -> None:
    # A suspended generation goes on where it stopped (apps.tasks.suspension): its text so
    # far is part of the output, its stream continues with the next seq.
    progress = read_progress(task) if adapter.can_suspend else None
    request = build_request(task, progress)
    publisher = open_publisher(task, resuming=progress is not None)
    parts: list[str] = [progress.text] if progress else []
    usage: Usage | None = None
    suspended: Suspended | None = None
    stopped = False
    # The operators' time to first token (recorded with the end), kept across suspensions.
    first_token_at: datetime | None = progress.first_token_at if progress else None
    slicer = _TimeSlice(task, adapter, request.request_id)
    # A cancel (a suspension) reaches the adapter from the keeper's thread at once, not
    # after the next token (which a slow model may take long to produce).
    held = keeper.hold(
        task, on_stop=lambda: adapter.cancel(request.request_id),
        on_suspend=(lambda: adapter.suspend(request.request_id)) if adapter.can_suspend else None,
    )
    _release_connection_while_streaming()
    stream = adapter.stream(request)
    try:
        for item in stream:
            if isinstance(item, TextChunk):
                if first_token_at is None and item.text:
                    first_token_at = timezone.now()
                    task_metrics.count_first_token(task, first_token_at)
                parts.append(item.text)
                publisher.add(item.text)
                if not held.must_suspend:
                    slicer.count_chunk()
            elif isinstance(item, Usage):
                usage = item
            elif isinstance(item, Suspended):
                suspended = item
                publisher.mark(SUSPENDED, {"reason": _suspend_reason(held, slicer)})
            if not stopped and held.must_stop:
                stopped = True
                adapter.cancel(request.request_id)
    except StaleAttempt:
        raise  # (not the adapter's failure)
    except AdapterError as exc:
        error = exc  # (an except clause's name is unbound when it ends)
        _until_recorded(task, lambda: _record_failure(task, error, "".join(parts), first_token_at))
        return
    except Exception as exc:  # a bug in an adapter must not leave the task running
        logger.exception("adapter %s crashed on task %s", task.model.adapter, task.id)
        failure = AdapterError(f"adapter error: {exc.__class__.__name__}")
        _until_recorded(task, lambda: _record_failure(task, failure, "".join(parts), first_token_at))
        return
    finally:
        keeper.release(held)
        stream.close()
        # Chunks reach the log before the end is recorded, so "done" comes last.
        publisher.close()

    if suspended is not None:
        stopped_at = Progress("".join(parts), suspended.checkpoint, suspended.completion_tokens, first_token_at)
        _until_recorded(task, lambda: _record_suspension(task, stopped_at, _suspend_reason(held, slicer)))
        return
    # Succeeded, or cancelled if a cancel was asked for meanwhile; nothing when
    # the lease was lost and another attempt owns the task now (finish_task's
    # conditional UPDATE is on the attempt this worker claimed).
    # The database may be down just now: the result is kept and written once it is back.
    _until_recorded(task, lambda: task_services.finish_task(
        task, state=TaskState.SUCCEEDED, output="".join(parts), usage=usage.as_dict() if usage else None,
        cancel_wins=True, first_token_at=first_token_at,
    ))


class _TimeSlice:
    """Time slicing (docs/scheduling.md): after every ``tokens`` text chunks (tokens, for
    the built-in adapters) a generation asks whether a task of its class or above waits
    for a slot of its model, and if one does, suspends itself to give the slot up.
    Off (0) for adapters that cannot suspend and where neither the model nor the
    settings ask for it."""

    def __init__(self, task: Task, adapter: ModelAdapter, request_id: str) -> None:
        configured = task.model.time_slice_tokens
        self.tokens = 0 if not adapter.can_suspend else (
            configured if configured is not None else settings.TIME_SLICE_TOKENS
        )
        self._task, self._adapter, self._request_id = task, adapter, request_id
        self._count = 0
        self.ended = False  # the slice ended with a task waiting: the adapter was asked to suspend

    def count_chunk(self) -> None:
        if not self.tokens or self.ended:
            return
        self._count += 1
        if self._count < self.tokens:
            return
        self._count = 0
        try:
            waiting = suspension.waiting_for_slot(self._task)
        except Exception:  # database down: go on with this slice rather than fail the generation
            logger.warning("could not look for tasks waiting for task %s's slot", self._task.id, exc_info=True)
            waiting = False
        finally:
            _release_connection_while_streaming()
        if waiting:
            self.ended = True
            self._adapter.suspend(self._request_id)


def _suspend_reason(held: Hold, slicer: _TimeSlice) -> SuspendReason:
    return SuspendReason.TIME_SLICE if slicer.ended and not held.must_suspend else SuspendReason.PREEMPTED


def _record_suspension(task: Task, progress: Progress, reason: SuspendReason) -> None:
    """Queue the suspended task again with its progress, or, when a cancel was asked
    for meanwhile, end it cancelled with the text it has (nothing when a newer
    attempt owns it: finish_task's conditional UPDATE decides)."""
    if suspension.suspend_task(task, progress, reason):
        return
    task_services.finish_task(
        task, state=TaskState.CANCELLED, output=progress.text, usage=None, error_code=EndReason.CANCELLED,
        error_message=EndReason.CANCELLED.label, first_token_at=progress.first_token_at,
    )


def _until_recorded(task: Task, record: Callable[[], object]) -> None:
    """Run ``record`` (a task's end being written), retrying with back-off while the
    database or Redis is down, for up to RECORD_RETRY_LIMIT_SECONDS: a worker keeps
    the result it made instead of dropping it (and the task running again).
    Each try is the whole conditional write: a newer attempt that took the task
    meanwhile (the lease lapsed) still wins, and this one records nothing."""
    delay = RECORD_RETRY_FIRST_SECONDS
    deadline = time.monotonic() + RECORD_RETRY_LIMIT_SECONDS
    while True:
        try:
            record()
            return
        except Exception as exc:
            down = unavailable_dependency(exc)
            if down is None or time.monotonic() + delay > deadline:
                raise
            logger.warning("recording the end of task %s failed (the %s is down); retrying in %.1f s",
                           task.id, down, delay)
        if not connection.in_atomic_block:
            connection.close()  # a broken connection is not reused; the next try opens a new one
        time.sleep(delay)
        delay = min(delay * 2, RECORD_RETRY_MAX_DELAY_SECONDS)


def _release_connection_while_streaming() -> None:
    """Give this slot's database connection back to the pool for the generation.

    The lease keeper renews the lease meanwhile, so the slot needs the database
    again only to record the end: with a pool (PostgreSQL, settings
    DB_POOL_MAX_SIZE) a worker with 1,000 slots streaming then holds a few
    connections, not 1,000. Without a pool (SQLite) closing would only cost a
    reconnect, so the connection is kept.
    """
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def _record_failure(
    task: Task, error: AdapterError, partial_output: str, first_token_at: datetime | None = None
) -> None:
    task.refresh_from_db(fields=["cancel_requested"])
    if not error.permanent and task.attempts_on_model < settings.TASK_MAX_ATTEMPTS and not task.cancel_requested:
        if task_services.release_for_retry(task, str(error)):
            logger.warning("attempt %d failed; the task is queued again for a retry", task.attempt)
            wake_dispatcher()  # ready again: the dispatcher hands it out by policy
            return
        task.refresh_from_db(fields=["cancel_requested"])  # a cancel may have arrived meanwhile
    elif not error.permanent and not task.cancel_requested and task.routed_from_id is not None:
        # Its last allowed attempt on this candidate failed: a routed task goes on to the
        # next candidate of its router rather than failing (a permanent error never does).
        moved_to = task_services.fall_back(task, str(error))
        if moved_to is not None:
            logger.warning("attempt %d failed, the last allowed on %s; the task falls back to %s",
                           task.attempt, task.model.name, moved_to)
            wake_dispatcher()
            return
        task.refresh_from_db(fields=["cancel_requested"])
    if task.cancel_requested:
        task_services.finish_task(task, state=TaskState.CANCELLED, output=partial_output, usage=None,
                                  error_code=EndReason.CANCELLED, error_message=EndReason.CANCELLED.label,
                                  first_token_at=first_token_at)
    elif error.permanent:
        task_services.finish_task(task, state=TaskState.FAILED, output=partial_output, usage=None,
                                  error_code=EndReason.GENERATION_FAILED, error_message=str(error),
                                  first_token_at=first_token_at)
    else:  # a poison task: it failed on every attempt it was allowed
        task_services.finish_task(task, state=TaskState.FAILED, output=partial_output, usage=None,
                                  error_code=EndReason.RETRIES_EXHAUSTED,
                                  error_message=task_services.exhausted_message(task.attempts_on_model, str(error)),
                                  first_token_at=first_token_at)
