"""The only writers of Task rows: submission, cancellation, erasure, and the
state changes a worker makes (claim, lease, finish, retry).

Every state change is a conditional UPDATE whose row count is checked, so two
processes racing on one task (a worker finishing while a tenant cancels, two
workers claiming after a re-dispatch) cannot both win.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.catalog.models import LLMModel
from apps.catalog.prompt_tokens import count_prompt_tokens
from apps.catalog.services import refuse_unplaceable, resolve_target_for_tenant
from apps.core import logs, notify, rows
from apps.core.errors import Conflict, NotFound, UnknownModel
from apps.tasks import dependencies, lifecycle, metrics, routed, statements
from apps.tasks.models import (
    CANCELLABLE_BEFORE_START,
    RETRYING,
    TERMINAL_STATES,
    EndReason,
    IdempotencyKey,
    Priority,
    Task,
    TaskState,
)
from apps.tasks.payloads import read_input, read_meta
from apps.tenants.models import ApiKey, Tenant
from apps.tenants.ratelimit import RateLimits
from apps.tenants.services import refuse_if_paused

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskRequest:
    """A validated submission (the API serializer builds it)."""

    model: str
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    max_tokens: int = 256
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    priority: str = Priority.NORMAL
    metadata: dict[str, Any] = field(default_factory=dict)
    client_ref: str | None = None
    depends_on: tuple[str, ...] = ()  # parent task ids: the task waits until they all succeed
    # Where to POST a summary when the task ends (apps.webhooks, which checks and keeps it):
    # None: the tenant's webhook URL, if it set one. With the output only when asked.
    webhook_url: str | None = None
    webhook_include_output: bool = False


IDEMPOTENCY_WINDOW = timedelta(hours=24)

# apps.core.notify channel: a running task's cancel was asked for; payload: its id.
CANCEL_CHANNEL = "task-cancel"


@dataclass(frozen=True)
class Submission:
    task: Task
    replayed: bool  # True: an earlier request with the same Idempotency-Key made it
    rate_limits: RateLimits | None = None  # the tenant's buckets after admitting it (not for replays)


def submit_task(
    tenant: Tenant, api_key: ApiKey | None, request: TaskRequest, idempotency_key: str | None = None
) -> Submission:
    refuse_if_paused(tenant)  # 403 tenant_paused, on every channel that submits
    # "name" runs the model's current version as of now; "name@version" pins one.
    target = resolve_target_for_tenant(tenant, request.model)
    if target is None:
        raise UnknownModel(f"model {request.model!r} does not exist or is not available")
    router = target.model if target.model.is_router else None
    cipher = tenant.cipher
    key_digest = request_digest = ""
    if idempotency_key is not None:
        key_digest = cipher.blind_index(f"idempotency-key:{idempotency_key}")
        request_digest = cipher.blind_index(json.dumps(asdict(request), sort_keys=True))
        earlier = _earlier_submission(tenant, key_digest, request_digest)
        if earlier is not None:
            return earlier
    if router is not None:
        # A routed model: one of its candidates runs the task (apps.tasks.routed), chosen
        # before admission so quotas and the charge are that model's; it places and counts.
        chosen = routed.route_submission(tenant, router, request)
        target, prompt_tokens = chosen.target, chosen.prompt_tokens
        lifecycle.checking(tenant, request)
    else:
        if target.version is not None:
            # A version no placement run has judged (pinned, not current, nothing queued)
            # gets its verdict now, so even the first task for it is refused if nothing can hold it.
            lifecycle.placing(target.version)
        refuse_unplaceable(target)  # 503: no worker can host that version (a replay above still answers)
        # The apps above refuse what they own (a callback URL on a private address: 400),
        # before the transaction: their checks may look names up.
        lifecycle.checking(tenant, request)
        # The budget is reserved by the model's own count where its adapter has one.
        # Counted before the transaction: a model's first count in this process
        # reads its tokenizer (a second or so), which must not hold a write lock.
        prompt_tokens = count_prompt_tokens(target.model, target.version, request.prompt, request.messages)
    model = target.model
    now = timezone.now()
    try:
        with transaction.atomic():
            # Quotas (403/429/402) and the budget reservation, in this transaction.
            admission = lifecycle.admit(tenant, api_key, request, prompt_tokens)
            task = Task(
                id=admission.task_id,
                tenant=tenant,
                api_key=api_key,
                model=model,
                model_version=target.version,
                routed_from=router,
                # A task with parents waits for them (apps.tasks.workflows).
                state=TaskState.WAITING if request.depends_on else TaskState.QUEUED,
                priority=request.priority,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                seed=request.seed,
                input_ciphertext=cipher.encrypt_json(
                    {"prompt": request.prompt, "messages": request.messages, "stop": request.stop}
                ),
                meta_ciphertext=cipher.encrypt_json({"metadata": request.metadata, "client_ref": request.client_ref}),
                client_ref_digest=cipher.blind_index(request.client_ref) if request.client_ref else "",
                queued_at=None if request.depends_on else now,
                # The submitting request's id (bound by llmagentos.middleware), for the
                # scheduler's and the worker's log lines about this task.
                request_id=logs.current("request_id"),
            )
            # create(), without compiling the INSERT on every submission (apps.core.rows).
            rows.insert(task, transaction.get_connection())
            if request.depends_on:
                dependencies.attach_parents(task, request.depends_on)
            lifecycle.submitting(task, request)  # what the apps above keep with it (its webhook)
            if key_digest:
                IdempotencyKey.objects.create(
                    tenant=tenant, key_digest=key_digest, request_digest=request_digest, task=task
                )
            lifecycle.announce_submitted(task)
            if task.state == TaskState.QUEUED:
                lifecycle.announce_ready(task)  # the dispatcher picks it by policy
    except IntegrityError:
        # A concurrent request with the same key won the race; answer as it did.
        earlier = _earlier_submission(tenant, key_digest, request_digest) if key_digest else None
        if earlier is None:
            raise
        return earlier
    return Submission(task=task, replayed=False, rate_limits=admission.rate_limits)


def _earlier_submission(tenant: Tenant, key_digest: str, request_digest: str) -> Submission | None:
    IdempotencyKey.objects.filter(tenant=tenant, created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW).delete()
    earlier = IdempotencyKey.objects.filter(tenant=tenant, key_digest=key_digest).select_related("task").first()
    if earlier is None:
        return None
    if earlier.request_digest != request_digest:
        raise Conflict(
            "this Idempotency-Key was used with a different request", code="idempotency_key_reused",
            param="Idempotency-Key",
        )
    return Submission(task=earlier.task, replayed=True)


def task_of(tenant: Tenant, task_id: uuid.UUID | str) -> Task:
    """The tenant's task with this id, model, version and tenant loaded. A missing
    task and another tenant's are refused alike (NotFound)."""
    try:
        task = (
            Task.objects.for_tenant(tenant)
            .select_related("model", "model_version", "tenant", "routed_from")
            .filter(pk=task_id)
            .first()
        )
    except (ValueError, ValidationError):  # not a UUID
        task = None
    if task is None:
        raise NotFound("no task with this id", code="task_not_found")
    return task


def tasks_with_client_ref(tenant: Tenant, client_ref: str):
    return Task.objects.for_tenant(tenant).filter(client_ref_digest=tenant.cipher.blind_index(client_ref))


def cancel_task(task: Task) -> Task:
    """Cancel now if it has not started; ask the worker to stop if it is running.

    Cancelling a finished task changes nothing (the call is idempotent).
    """
    now = timezone.now()
    # The end and its ``ending`` effects (the charge, the webhook's delivery) commit
    # together: a process that dies in between leaves the task as it was.
    with transaction.atomic():
        cancelled = Task.objects.filter(pk=task.pk, state__in=CANCELLABLE_BEFORE_START).update(
            state=TaskState.CANCELLED,
            finished_at=now,
            error_code=EndReason.CANCELLED,
            error_message=EndReason.CANCELLED.label,
            progress_ciphertext=None,  # a suspended task's progress: nothing will resume it
        )
        if cancelled:
            lifecycle.announce_end(task.pk)
        elif Task.objects.filter(pk=task.pk, state=TaskState.RUNNING).update(cancel_requested=True):
            # The worker holding it checks at once (apps.runtime.leases), not at its next renewal.
            transaction.on_commit(partial(notify.wake, CANCEL_CHANNEL, str(task.pk)), robust=True)
    task.refresh_from_db()
    return task


def erase_task(task: Task) -> None:
    """Remove the task's input, metadata and output for good; keep the accounting row."""
    cancel_task(task)
    _erase([task.pk])


def erase_finished_tasks(tasks) -> int:
    """Erase, in one UPDATE, those of ``tasks`` that have finished and are not erased yet
    (output retention: apps.tasks.retention); returns how many were erased."""
    ids = list(
        tasks.filter(state__in=TERMINAL_STATES, erased_at__isnull=True).order_by().values_list("pk", flat=True)
    )
    return _erase(ids) if ids else 0


def _erase(task_ids: list[uuid.UUID]) -> int:
    erased = Task.objects.filter(pk__in=task_ids).update(
        input_ciphertext=None,
        meta_ciphertext=None,
        output_ciphertext=None,
        progress_ciphertext=None,
        client_ref_digest="",
        erased_at=timezone.now(),
    )

    lifecycle.announce_erased(task_ids)
    return erased


# --- Worker side ---------------------------------------------------------------------


def lease_deadline():
    return timezone.now() + timedelta(seconds=settings.TASK_LEASE_SECONDS)


def claim_task(task_id: uuid.UUID, worker_name: str) -> Task | None:
    """Take the lease on a queued task; None when another worker has it or it is gone.

    One statement (apps.tasks.statements): the conditional UPDATE returns the
    task with its tenant, model and version loaded."""
    task = statements.claim(task_id, worker_name, timezone.now(), lease_deadline())
    if task is not None:
        metrics.count_claim(task)
    return task


@dataclass(frozen=True)
class LeaseRound:
    """What one renewal found: the attempts that still own their task (the others
    must stop), and those of them the scheduler asked to suspend (apps.tasks.suspension)."""

    owned: set[uuid.UUID]
    suspend: set[uuid.UUID]


def renew_leases(attempts: Mapping[uuid.UUID, int]) -> set[uuid.UUID]:
    """Extend the leases of the given attempts (task id -> attempt) that still own
    their task; returns those ids (see ``renew_leases_round``)."""
    return renew_leases_round(attempts).owned


def renew_leases_round(attempts: Mapping[uuid.UUID, int]) -> LeaseRound:
    """Extend the leases of the given attempts (task id -> attempt) that still own
    their task. An id left out of ``owned`` must stop: cancel asked, or the lease
    was lost (requeued, or another attempt owns the task).

    One UPDATE per distinct attempt number (almost always one) and one SELECT,
    whatever the number of tasks: a worker renews all of its running tasks at
    once (apps.runtime.leases) instead of one query per task per second.
    """
    by_attempt: dict[int, list[uuid.UUID]] = {}
    for task_id, attempt in attempts.items():
        by_attempt.setdefault(attempt, []).append(task_id)
    deadline = lease_deadline()
    for attempt, task_ids in by_attempt.items():
        Task.objects.filter(
            pk__in=task_ids, attempt=attempt, state=TaskState.RUNNING, cancel_requested=False
        ).update(lease_expires_at=deadline)
    # Read back rather than trust the UPDATE's count: the count cannot say which
    # rows matched, and the read also catches a cancel that landed in between.
    owned = Task.objects.filter(pk__in=list(attempts), state=TaskState.RUNNING, cancel_requested=False)
    found = LeaseRound(set(), set())
    for task_id, attempt, suspend in owned.values_list("pk", "attempt", "suspend_requested"):
        if attempts[task_id] == attempt:
            found.owned.add(task_id)
            if suspend:
                found.suspend.add(task_id)
    return found


def finish_task(
    task: Task,
    *,
    state: TaskState,
    output: str,
    usage: dict[str, int] | None,
    error_code: str = "",
    error_message: str = "",
    cancel_wins: bool = False,
    first_token_at: datetime | None = None,
) -> bool:
    """Record the end of this attempt; False when the attempt no longer owns the task.

    ``first_token_at``: when this attempt produced its first text (None: none),
    written with the end rather than as it happens, so a streaming slot needs
    no database connection.

    ``cancel_wins``: if a cancel was asked for while it ran, it ends cancelled
    instead (decided by the same statement, so no read comes first). An erased
    task keeps no output, even one that was being generated.
    """
    now = timezone.now()
    output_ciphertext = task.tenant.cipher.encrypt_json({"text": output})
    with transaction.atomic():
        written = statements.finish(
            task, state=state, error_code=error_code, error_message=error_message, finished_at=now,
            usage=usage, output_ciphertext=output_ciphertext, cancel_wins=cancel_wins,
            first_token_at=first_token_at,
        )
        if written is not None:
            # The row as this UPDATE left it: the end of its stream needs no read-back.
            ended = copy.copy(task)
            ended.state, ended.error_code = written.state, written.error_code
            ended.error_message = written.error_message
            ended.finished_at, ended.lease_expires_at = now, None
            ended.first_token_at = first_token_at
            if usage is not None:
                ended.prompt_tokens, ended.completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
            lifecycle.announce_end(task.pk, usage, ended)
    if written is None:
        # Fenced: a newer attempt owns the task (its lease was lost) or it has ended.
        # What this attempt produced is dropped, and never charged (the charge is
        # settled by the end that is written).
        logger.warning("attempt %d of task %s no longer owns it: its %s result is dropped",
                       task.attempt, task.pk, state)
    if written is not None:
        # The code only: an error's message may quote what a model or an upstream said.
        with logs.bound(task_id=str(task.pk), request_id=task.request_id):
            logger.info(
                "ended %s%s, %s prompt + %s completion tokens", written.state,
                f" ({written.error_code})" if written.error_code else "",
                usage["prompt_tokens"] if usage else "-", usage["completion_tokens"] if usage else "-",
            )
    return written is not None


def release_for_retry(task: Task, reason: str) -> bool:
    """Give a failed attempt's task back to the queue (transient error).

    Never for a task whose cancel was asked for: that one ends cancelled.
    """
    released = Task.objects.filter(
        pk=task.pk, state=TaskState.RUNNING, attempt=task.attempt, cancel_requested=False
    ).update(
        state=TaskState.QUEUED,
        lease_expires_at=None,
        worker_name="",
        dispatched_at=None,
        error_code=RETRYING,
        error_message=reason,
        **START_OVER,
    )
    return bool(released)


def fall_back(task: Task, reason: str) -> str | None:
    """A routed task whose attempts on its model all failed transiently goes on to the
    next candidate of its router (apps.tasks.routed.next_candidate, which leaves out
    those it ran on and those the tenant may not use): queued again on that model's
    current version, its attempts counting on, so the next claim's stream shows a
    ``restart`` and its seq continues. Returns the candidate's name; None when the
    task is not routed, no candidate is left, or this attempt no longer owns the task
    (a cancel, a newer attempt): it then ends as any task does.

    The charge stays the task's one reservation, settled at its end by the usage of
    the attempt that ran there (a failed attempt records none)."""
    if task.routed_from_id is None or task.erased_at is not None:
        return None
    router = LLMModel.objects.get(pk=task.routed_from_id)
    payload = read_input(task) or {}
    request = TaskRequest(
        model=router.name, prompt=payload.get("prompt"), messages=payload.get("messages"),
        max_tokens=task.max_tokens, priority=task.priority, metadata=read_meta(task).get("metadata") or {},
    )
    left = task.model.name
    chosen = routed.next_candidate(task.tenant, router, request, [entry["model"] for entry in task.fallbacks] + [left])
    if chosen is None:
        return None
    moved = Task.objects.filter(
        pk=task.pk, state=TaskState.RUNNING, attempt=task.attempt, cancel_requested=False
    ).update(
        model=chosen.target.model,
        model_version=chosen.target.version,
        fallbacks=[*task.fallbacks, {"model": left, "attempts": task.attempt}],
        state=TaskState.QUEUED,
        lease_expires_at=None,
        worker_name="",
        dispatched_at=None,
        error_code=RETRYING,
        error_message=f"{left} failed ({reason}); falling back to {chosen.target.model.name}",
        **START_OVER,
    )
    return chosen.target.model.name if moved else None


# A retry starts the generation over (its stream shows a ``restart``): a suspended
# generation's progress is dropped with it, and the next claim counts an attempt.
START_OVER: dict[str, Any] = {"progress_ciphertext": None, "progress_tokens": 0, "suspend_requested": False}


# Why a running task goes back to the queue without its worker's word (the message of
# its RETRYING mark, and of its worker_lost end on the last attempt).
LEASE_EXPIRED = "the worker stopped responding"
WORKER_RESTARTED = "the worker restarted"


def exhausted_message(attempt: int, reason: str) -> str:
    """The end message of a task whose last allowed attempt failed: says so and why."""
    return f"attempt {attempt} of {settings.TASK_MAX_ATTEMPTS} failed, the last allowed: {reason}"


def reap_expired_leases(now: datetime | None = None) -> tuple[list[Task], int]:
    """Running tasks whose worker stopped renewing (lease expired before ``now``): back
    to the queue, or failed after the last attempt. Returns (requeued tasks, number failed)."""
    now = now or timezone.now()
    return _take_back(Task.objects.filter(state=TaskState.RUNNING, lease_expires_at__lt=now), LEASE_EXPIRED, now)


def release_worker_leases(worker_name: str) -> tuple[list[Task], int]:
    """A worker process starts under ``worker_name``: the attempts its predecessor
    held died with it, so their tasks go back to the queue now rather than when
    their leases run out (or fail, on their last attempt). Returns (requeued, failed)."""
    if not worker_name:
        return [], 0
    running = Task.objects.filter(state=TaskState.RUNNING, worker_name=worker_name)
    requeued, failed = _take_back(running, WORKER_RESTARTED, timezone.now())
    if requeued:
        lifecycle.announce_ready()  # the dispatcher hands them out again
    if requeued or failed:
        logger.warning("worker %s restarted: %d of its tasks requeued, %d failed after the last attempt",
                       worker_name, len(requeued), failed)
    return requeued, failed


def _take_back(running, reason: str, now: datetime) -> tuple[list[Task], int]:
    """End the attempts of ``running`` (running tasks, filtered by why they are taken
    back) that no worker will finish: requeued for attempt + 1 (the next claim), ended
    cancelled if a cancel was asked for, failed ``worker_lost`` on the last attempt.

    Each change is conditional on the task still matching ``running`` on the attempt
    read, so a renewal or an end that lands in between wins. An end commits with its
    ``ending`` effects (the charge, the webhook's delivery), one task at a time."""
    requeued: list[Task] = []
    failed = 0
    for task in running.only("id", "attempt", "fallbacks", "priority", "cancel_requested"):
        owned = running.filter(pk=task.pk, attempt=task.attempt)
        if not task.cancel_requested and task.attempts_on_model < settings.TASK_MAX_ATTEMPTS:
            if owned.update(state=TaskState.QUEUED, lease_expires_at=None, worker_name="", dispatched_at=None,
                            error_code=RETRYING, error_message=reason, **START_OVER):
                requeued.append(task)
            continue
        with transaction.atomic():
            if task.cancel_requested:
                ended = owned.update(
                    state=TaskState.CANCELLED, finished_at=now, lease_expires_at=None,
                    error_code=EndReason.CANCELLED, error_message=EndReason.CANCELLED.label,
                )
            else:
                ended = owned.update(
                    state=TaskState.FAILED,
                    finished_at=now,
                    lease_expires_at=None,
                    error_code=EndReason.WORKER_LOST,
                    error_message=exhausted_message(task.attempts_on_model, reason),
                )
                failed += ended
            if ended:
                lifecycle.announce_end(task.pk)
    return requeued, failed


def fail_unplaceable(version_ids: Sequence[uuid.UUID], reasons: Mapping[uuid.UUID, str]) -> int:
    """Fail the queued tasks of ``version_ids`` (versions no worker can hold, for too
    long): ``model_unplaceable`` with the placement's reason. Returns how many."""
    failed = 0
    now = timezone.now()
    stuck = Task.objects.filter(state=TaskState.QUEUED, model_version_id__in=list(version_ids))
    for task_id, version_id in stuck.values_list("pk", "model_version_id"):
        with transaction.atomic():
            ended = Task.objects.filter(pk=task_id, state=TaskState.QUEUED).update(
                state=TaskState.FAILED, finished_at=now, dispatched_at=None, progress_ciphertext=None,
                error_code=EndReason.MODEL_UNPLACEABLE,
                error_message=f"{EndReason.MODEL_UNPLACEABLE.label}: {reasons.get(version_id, '')}".rstrip(": "),
            )
            if ended:
                lifecycle.announce_end(task_id)
        failed += ended
    return failed


def claim_for_dispatch(task_id: uuid.UUID) -> bool:
    """Mark a ready task as handed to a worker queue; False if it is no longer ready."""
    return bool(
        Task.objects.filter(pk=task_id, state=TaskState.QUEUED, dispatched_at__isnull=True).update(
            dispatched_at=timezone.now()
        )
    )


def undo_dispatch(task_id: uuid.UUID) -> None:
    """The queue refused the message: the task is ready again."""
    Task.objects.filter(pk=task_id, state=TaskState.QUEUED).update(dispatched_at=None)


def forget_stale_dispatches(older_than: timedelta) -> int:
    """Queued tasks handed to a queue so long ago that the message may be lost
    (a Redis restart) become ready again; a duplicate message is harmless."""
    cutoff = timezone.now() - older_than
    return Task.objects.filter(state=TaskState.QUEUED, dispatched_at__lt=cutoff).update(dispatched_at=None)
