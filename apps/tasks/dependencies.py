"""Task dependencies: linking, release and failure propagation.

The rules (docs/api.md, "Dependencies and workflows"):

- A task with parents is created ``waiting``. It becomes ``queued`` once every
  parent has succeeded; then, and only then, its ``{{KEY.output}}`` references
  are replaced by the parents' outputs (apps.tasks.graph.substitute: literal,
  one pass) and its encrypted input is rewritten with the result, so what
  GET shows is what the model was given, and retries see the same text.
- A task whose input took its parents' outputs is priced again at its
  release, by that input, like a submission: longer than a submitted prompt
  may be, it fails with ``input_too_long``; over the token budget, with
  ``budget_exceeded`` (its reservation is made for the substituted input in
  the releasing transaction, or it fails in it).
- When a parent fails or is cancelled, every waiting descendant fails with
  ``dependency_failed`` and a message naming that parent and its state.

Races. Every transition here is a conditional UPDATE on ``state='waiting'``
whose row count is checked, so a task is released (and announced to the
dispatcher) or failed exactly once however many parents finish at the same
moment. Nothing is locked (but the tenant's admission lock, where a release
re-prices the task): a parent's end and a child's submission each look
at the other after their own commit (``task_ended`` after the parent's,
``_settle`` after the child's), so whichever commits last sees both.
``settle_stranded`` (a periodic job) catches a task whose hook was lost with
a crashed process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from functools import partial

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.catalog.prompt_tokens import count_prompt_tokens
from apps.core.errors import InvalidInput, OverBudget
from apps.tasks import graph, lifecycle, statements
from apps.tasks.models import EndReason, Task, TaskDependency, TaskState
from apps.tasks.payloads import node_ids, read_input, read_output
from apps.tenants.services import lock_admissions

DEPENDENCY_FAILED = EndReason.DEPENDENCY_FAILED
MAX_PARENTS = 100
UNFINISHED_STATES = (TaskState.WAITING, TaskState.QUEUED, TaskState.RUNNING)
DOOMING_STATES = (TaskState.FAILED, TaskState.CANCELLED)


# --- Single tasks: linking at submission ---------------------------------------------


def attach_parents(task: Task, parent_ids: Sequence[str]) -> None:
    """Link a task being submitted (created ``waiting``) to its parents.

    Runs inside the submission's transaction: an unknown id — or another
    tenant's, answered alike — rolls the task back with a 400. When the parents
    have already finished, the task is released or failed at once, so the 201
    shows its real state; ``task`` is refreshed to it.
    """
    mine = Task.objects.for_tenant(task.tenant).filter(pk__in=parent_ids)
    found = {str(pk): pk for pk in mine.values_list("pk", flat=True)}
    missing = [parent_id for parent_id in parent_ids if parent_id not in found]
    if missing:
        raise InvalidInput(f"depends_on: no task with id {missing[0]}", code="parent_not_found", param="depends_on")
    parents = [found[parent_id] for parent_id in parent_ids]  # in the order given: GET shows it so
    TaskDependency.objects.bulk_create([TaskDependency(child=task, parent_id=pk) for pk in parents])
    _raise_ranks(task)
    _settle(task.pk)
    # A parent may finish between this read and our commit; its own hook then
    # cannot see this uncommitted task, so look again once committed.
    transaction.on_commit(partial(_settle_and_dispatch, [task.pk]), robust=True)
    task.refresh_from_db()


def _raise_ranks(task: Task) -> None:
    """A new descendant chain may lengthen its ancestors' critical paths.

    Only tasks not yet dispatched matter (waiting, queued); a queued task's
    parents have all succeeded, so the walk goes on through waiting ones only.

    Bounded work, in one statement (apps.tasks.statements.raise_ancestor_ranks).
    Walking up level by level, a task added at the end of a chain of n waiting
    tasks raised every one of them: n rounds of queries in the submitting
    transaction. Ranks instead saturate at ``graph.RANK_HORIZON``, so the walk
    stops that many levels up (an ancestor farther up already ranks at the
    cap), and a recursive CTE does the walk and the UPDATE at once: the
    submission's statement count no longer grows with the chain. (Storing a
    depth from the roots would be cheaper still, but it orders the wrong way:
    the dispatcher must start the task with the most work behind it.)
    """
    statements.raise_ancestor_ranks(task.pk, task.critical_path_rank, graph.RANK_HORIZON)


# --- Release and failure ---------------------------------------------------------------


def task_ended(task_id: uuid.UUID, _ended: Task | None = None) -> None:
    """After a task's end is committed (registered on apps.tasks.lifecycle.ended):
    release its waiting children whose parents have all succeeded, or fail
    all its waiting descendants when it failed or was cancelled."""
    # Children first: most tasks have none, and then the task itself need not be read.
    children = statements.waiting_children(task_id)
    if not children:
        return
    task = Task.objects.filter(pk=task_id).only("pk", "state", "error_code").first()
    if task is None:
        return
    if task.state == TaskState.SUCCEEDED:
        _settle_and_dispatch(children)
    elif task.state in DOOMING_STATES:
        _fail_waiting(children, _failure_reason(task))


def _settle_and_dispatch(task_ids: Sequence[uuid.UUID]) -> None:
    for task_id in task_ids:
        released = _settle(task_id)
        if released is not None:
            # Ready now: tell the dispatcher, as a submission does.
            lifecycle.announce_ready(released)


def _settle(task_id: uuid.UUID) -> Task | None:
    """Release a waiting task whose parents all succeeded (its input resolved),
    or fail it when a parent failed or was cancelled. The released task, else None.

    A task whose input took its parents' outputs is priced again at its
    release, by its real input (``lifecycle.admit_release``): admission could
    only count the references. It fails instead, and what waits on it with it,
    when that input is longer than a submitted prompt may be (input_too_long)
    or no longer fits in the budget (budget_exceeded).
    """
    task = (
        Task.objects.select_related("tenant", "workflow", "model", "model_version")
        .filter(pk=task_id, state=TaskState.WAITING)
        .first()
    )
    if task is None:
        return None
    parents = list(task.parents.only("pk", "state", "error_code", "output_ciphertext", "tenant_id"))
    doomed = next((parent for parent in parents if parent.state in DOOMING_STATES), None)
    if doomed is not None:
        _fail_waiting([task.pk], _failure_reason(doomed))
        return None
    if any(parent.state != TaskState.SUCCEEDED for parent in parents):
        return None
    payload = read_input(task)
    resolved = payload
    if payload is not None:
        by_key = _parents_by_key(task, parents)
        outputs = {key: read_output(parent) for key, parent in by_key.items()}
        references = graph.input_references(payload.get("prompt"), payload.get("messages"))
        erased = [by_key[key] for _, key in references if key in outputs and outputs[key] is None]
        if erased:
            _fail_waiting([task.pk], f"the output of dependency {erased[0].pk} was erased before this task ran")
            return None
        # No referenced output is None past the check above; unreferenced ones are not needed.
        present = {key: output for key, output in outputs.items() if output is not None}
        try:
            resolved = graph.substitute_input(payload, present)
        except graph.InputTooLong as too_long:
            _fail_at_release(task, TaskState.WAITING, EndReason.INPUT_TOO_LONG, str(too_long))
            return None
    if resolved == payload:  # nothing substituted: admission priced this very input
        released = Task.objects.filter(pk=task.pk, state=TaskState.WAITING).update(
            state=TaskState.QUEUED, queued_at=timezone.now()
        )
        return task if released else None
    assert resolved is not None
    # Counted before the transaction, as at submission: a model's first count
    # in a process reads its tokenizer, which must not hold a write lock.
    prompt_tokens = count_prompt_tokens(
        task.model, task.model_version, resolved.get("prompt"), resolved.get("messages")
    )
    with transaction.atomic():
        # The tenant's admission lock first, as a submission takes it (then task
        # rows, then the ledger): taken after this task's row, a submission
        # raising the ranks of its ancestors could deadlock with this release.
        lock_admissions(task.tenant)
        released = Task.objects.filter(pk=task.pk, state=TaskState.WAITING).update(
            state=TaskState.QUEUED, queued_at=timezone.now(),
            input_ciphertext=task.tenant.cipher.encrypt_json(resolved),
        )
        if not released:
            return None
        try:
            # Reserves for this input in place of the submitted one, or refuses
            # having changed nothing; either way in this transaction.
            lifecycle.admit_release(task, resolved, prompt_tokens)
        except OverBudget as refusal:
            _fail_at_release(task, TaskState.QUEUED, EndReason.BUDGET_EXCEEDED, refusal.message)
            return None
    return task


def _fail_at_release(task: Task, state: TaskState, reason: EndReason, message: str) -> None:
    """``task`` (in ``state``) cannot run with the input its parents gave it: it
    fails with ``reason``, and what waits on it fails as a failed parent's
    dependants do, in one transaction (its end settles its reservation)."""
    with transaction.atomic():
        lock_admissions(task.tenant)  # the submission's lock order (see _settle)
        failed = Task.objects.filter(pk=task.pk, state=state).update(
            state=TaskState.FAILED, finished_at=timezone.now(), error_code=reason, error_message=message
        )
        if not failed:
            return
        lifecycle.announce_end(task.pk)
        task.state, task.error_code = TaskState.FAILED, reason
        _fail_waiting(statements.waiting_children(task.pk), _failure_reason(task))


def _parents_by_key(task: Task, parents: Sequence[Task]) -> dict[str, Task]:
    """What ``{{KEY.output}}`` names for ``task``: a parent by task id, and in a
    workflow by node name too."""
    by_key: dict[str, Task] = {}
    for parent in parents:
        parent.tenant = task.tenant  # same tenant by construction; saves a query each
        by_key[str(parent.pk)] = parent
    if task.workflow is not None:
        task.workflow.tenant = task.tenant
        for name, parent_id in node_ids(task.workflow).items():
            if parent_id in by_key:
                by_key[name] = by_key[parent_id]
    return by_key


def _failure_reason(parent: Task) -> str:
    # The id, not a node name: error messages are stored in plain text, and
    # names are the tenant's words (GET /api/v1/workflows/{id} maps ids to names).
    if parent.state == TaskState.CANCELLED:
        return f"dependency {parent.pk} was cancelled"
    detail = f" ({parent.error_code})" if parent.error_code else ""
    return f"dependency {parent.pk} failed{detail}"


def _fail_waiting(start: Iterable[uuid.UUID], reason: str) -> int:
    """Fail these waiting tasks and all their waiting descendants; how many failed.

    One transaction, so the ends are announced (streams, task_ended hooks)
    after all of them are recorded and the hooks find nothing left to do.
    """
    now = timezone.now()
    failed = 0
    with transaction.atomic():
        frontier = list(start)
        while frontier:
            ended = []
            for task_id in frontier:
                if Task.objects.filter(pk=task_id, state=TaskState.WAITING).update(
                    state=TaskState.FAILED, finished_at=now, error_code=DEPENDENCY_FAILED, error_message=reason
                ):
                    lifecycle.announce_end(task_id)
                    ended.append(task_id)
            failed += len(ended)
            frontier = list(
                TaskDependency.objects.filter(parent_id__in=ended, child__state=TaskState.WAITING)
                .values_list("child_id", flat=True)
                .distinct()
            )
    return failed


def settle_stranded(limit: int = 500) -> int:
    """Waiting tasks that could have moved: every parent finished, or one failed.

    Their parents' hooks run after commit in the process that ended them; a
    process that died in between leaves them here. Returns how many moved.
    """
    parents = Task.objects.filter(child_links__child=OuterRef("pk"))
    stranded = (
        Task.objects.filter(state=TaskState.WAITING)
        .filter(~Exists(parents.filter(state__in=UNFINISHED_STATES)) | Exists(parents.filter(state__in=DOOMING_STATES)))
        .order_by("-critical_path_rank", "created_at")
        .values_list("pk", flat=True)[:limit]
    )
    moved = 0
    for task_id in list(stranded):
        _settle_and_dispatch([task_id])
        moved += not Task.objects.filter(pk=task_id, state=TaskState.WAITING).exists()
    return moved
