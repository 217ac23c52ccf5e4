"""Admission: may a tenant's task enter the queue, and what it costs.

``admit`` runs inside the transaction that inserts the task, in this order:

1. the plan's priority cap                          → 403 priority_not_allowed
2. a worst-case cost (prompt tokens + max_tokens)
   above the whole tokens-per-minute limit          → 429 rate_limited
3. the tenant's admission lock (one row per tenant), then the count of its
   queued and waiting tasks against ``max_queued``   → 429 queue_full
4. the budget: reserve the worst-case cost with a
   conditional UPDATE                               → 402 budget_exceeded
5. the rate limits, rpm and tpm together            → 429 rate_limited

A refusal raises; the transaction rolls back, so a refused task reserves
nothing. The rate limits come last so that a refused task takes nothing from
them either (Redis does not roll back with the database). Each admitted task has one reservation
(``TaskCharge``), settled exactly once by ``settle_task`` when the task ends —
succeeded, failed or cancelled — at its actual usage, in full: a prompt that
turned out longer than counted is charged too, so the budget can end a period
over by that difference (the honest figure; admission refuses the next task).
A task whose input takes its parents' outputs (``{{KEY.output}}``) is priced
again when it is released, by its real input (``admit_release``): its
reservation becomes that worst case, or it fails with budget_exceeded.

The prompt's tokens come from the model's own adapter where it can count them
(``apps.catalog.prompt_tokens``: a tokenizer, the echo adapter's words), counted
by the caller before its transaction; else from ``estimate_prompt_tokens``.

The running-task cap (``max_running``) is not checked here: the dispatcher
holds a capped tenant's tasks back, and they wait their turn (Contracts).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

# estimate_prompt_tokens: where the model's adapter cannot count (moved to the catalog, which
# routed models' length rules need too; still importable from here).
from apps.catalog.prompt_tokens import estimate_prompt_tokens
from apps.core import metrics
from apps.core.errors import DomainError, OverBudget, PermissionRefused, RateLimited
from apps.scheduler import admission_reads
from apps.tasks.models import TERMINAL_STATES, Task, TaskState
from apps.tenants import ratelimit
from apps.tenants import services as tenant_services
from apps.tenants import statements as tenant_statements
from apps.tenants.models import PRIORITY_CLASSES_HIGHEST_FIRST, ApiKey, Plan, Tenant

if TYPE_CHECKING:
    from apps.tasks.services import TaskRequest

PENDING_STATES = (TaskState.QUEUED, TaskState.WAITING)


@dataclass(frozen=True)
class Admission:
    task_id: uuid.UUID  # the id the admitted task must be inserted with
    cost_tokens: int  # reserved until the task ends
    rate_limits: ratelimit.RateLimits


def admit(tenant: Tenant, api_key: ApiKey | None, request: TaskRequest, prompt_tokens: int | None) -> Admission:
    """Admit one task or refuse it: PermissionRefused, RateLimited or OverBudget. Call it inside the
    ``transaction.atomic()`` block that inserts the task, with the returned id. ``prompt_tokens``:
    the model's own count of the prompt (apps.catalog.prompt_tokens), None where it has none."""
    with _counted_refusals():
        return _admit(tenant, api_key, request, prompt_tokens)


@contextmanager
def _counted_refusals() -> Iterator[None]:
    """Count a refusal by its error code (llmagentos_admission_rejections_total) as it
    passes: the transaction it rolls back does not undo that it happened."""
    try:
        yield
    except DomainError as exc:
        metrics.admission_rejections.labels(reason=exc.code).inc()
        raise


def _admit(tenant: Tenant, api_key: ApiKey | None, request: TaskRequest, prompt_tokens: int | None) -> Admission:
    # Fresh: an operator may just have changed it. Through a cursor, as the lock and the
    # queue count below (every admission: apps.tenants.statements, .admission_reads).
    plan = tenant_statements.plan(tenant.plan_id)
    _check_priority(plan, request.priority)
    if prompt_tokens is None:
        prompt_tokens = estimate_prompt_tokens(request.prompt, request.messages)
    cost = prompt_tokens + request.max_tokens
    if plan.tpm is not None and cost > plan.tpm:
        raise RateLimited(
            f"this task's worst-case cost ({cost} tokens) exceeds the plan's {plan.tpm} tokens per minute "
            "on its own; lower max_tokens",
            param="max_tokens",
            retry_after_seconds=int(ratelimit.PERIOD_SECONDS),
            rate_limits=ratelimit.peek(tenant, plan),
        )
    tenant_services.lock_admissions(tenant)
    _check_queue(tenant, plan)
    task_id = uuid.uuid4()
    try:
        tenant_services.reserve_budget(tenant, plan, api_key, task_id, cost)
    except tenant_services.BudgetExceeded as exc:
        raise OverBudget(_budget_message(exc), rate_limits=ratelimit.peek(tenant, plan)) from None
    limits = ratelimit.consume(tenant, plan, cost)
    if not limits.allowed:
        raise RateLimited(
            f"over the plan's rate limits ({_limit_text(plan)}); retry after {limits.retry_after_seconds} s",
            retry_after_seconds=limits.retry_after_seconds,
            rate_limits=limits,
        )
    return Admission(task_id=task_id, cost_tokens=cost, rate_limits=limits)


def admit_release(task: Task, resolved_input: Mapping[str, Any], prompt_tokens: int | None) -> None:
    """Price a task again at its release, by its input with its parents' outputs in
    it (apps.tasks.dependencies), and reserve that worst case in place of the one
    admission made; OverBudget, having changed nothing, when it does not fit.

    Admission priced the input as submitted, where a ``{{KEY.output}}`` is a few
    characters; substituted, it can be any size, and only now is it known. Called
    in the releasing transaction (which holds the tenant's admission lock), so
    the release and its reservation commit together; the reservation's
    conditional UPDATE cannot pass the budget whatever runs beside it.
    ``prompt_tokens``: the model's own count of the substituted prompt, None
    where it has none. Rate limits are not taken again: the task was counted
    against them when it was submitted.
    """
    plan = Plan.objects.get(pk=task.tenant.plan_id)
    if prompt_tokens is None:
        prompt_tokens = estimate_prompt_tokens(resolved_input.get("prompt"), resolved_input.get("messages"))
    with _counted_refusals():
        try:
            tenant_services.reprice_reservation(plan, task.pk, prompt_tokens + task.max_tokens)
        except tenant_services.BudgetExceeded as exc:
            raise OverBudget(_budget_message(exc)) from None


def _check_priority(plan: Plan, priority: str) -> None:
    order = PRIORITY_CLASSES_HIGHEST_FIRST
    if order.index(priority) < order.index(plan.max_priority):
        raise PermissionRefused(
            f"the priority class {priority!r} is above this tenant's plan cap ({plan.max_priority!r})",
            code="priority_not_allowed",
            param="priority",
        )


def _check_queue(tenant: Tenant, plan: Plan) -> None:
    # Counted under the tenant's admission lock, so two processes cannot both
    # see the last free place. (A counter column would avoid the count but
    # must then follow every state change other code makes.)
    if plan.max_queued is None:
        return
    pending = admission_reads.tasks_in_states(tenant.pk, PENDING_STATES)
    if pending >= plan.max_queued:
        raise RateLimited(
            f"this tenant already has {pending} tasks queued or waiting (the plan allows {plan.max_queued})",
            code="queue_full",
            retry_after_seconds=settings.QUEUE_FULL_RETRY_AFTER_SECONDS,
        )


def _budget_message(exc: tenant_services.BudgetExceeded) -> str:
    resets = f"; it resets at {exc.period_end:%Y-%m-%dT%H:%M:%SZ}" if exc.period_end else ""
    period = "" if exc.period == "none" else f" {exc.period}ly"
    return (
        f"over the token budget: this task may cost up to {exc.cost_tokens} tokens (prompt + max_tokens) "
        f"but {exc.remaining_tokens} of the{period} budget of {exc.budget_tokens} remain "
        f"({exc.spent_tokens} spent, {exc.reserved_tokens} reserved by unfinished tasks){resets}"
    )


def _limit_text(plan: Plan) -> str:
    parts = [f"{limit} {unit}" for limit, unit in ((plan.rpm, "requests"), (plan.tpm, "tokens")) if limit is not None]
    return " and ".join(parts) + " per minute"


# --- Settlement --------------------------------------------------------------------------


def settle_task(task_id: uuid.UUID, usage: dict[str, int] | None = None) -> bool:
    """Charge an ended task its actual usage (none recorded: nothing) and release
    the rest of its reservation. Idempotent: only the first call changes anything.

    Called where a task reaches a terminal state, in the same transaction when
    there is one, so the state change and the charge commit together. ``usage``:
    the usage the caller has just recorded on the task; None: read it from the row.
    """
    prompt_tokens: int | None
    completion_tokens: int | None
    if usage is not None:
        prompt_tokens, completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
    else:
        recorded = Task.objects.filter(pk=task_id).values_list("prompt_tokens", "completion_tokens").first()
        prompt_tokens, completion_tokens = recorded or (None, None)
    return tenant_services.settle_charge(task_id, prompt_tokens or 0, completion_tokens or 0)


def settle_forgotten() -> int:
    """Settle reservations of tasks that ended without being settled (the process
    died between the state change and the charge); returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.SETTLEMENT_SWEEP_AFTER_SECONDS)
    open_ids = tenant_services.unsettled_charges(created_before=cutoff)
    ended = Task.objects.filter(pk__in=open_ids, state__in=TERMINAL_STATES).values_list("pk", flat=True)
    return sum(settle_task(task_id) for task_id in ended)


# --- Usage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageReport:
    plan: Plan
    budget: tenant_services.BudgetUsage
    rate_limits: ratelimit.RateLimits
    queued_tasks: int  # queued or waiting
    running_tasks: int


def usage_report(tenant: Tenant) -> UsageReport:
    """What the tenant has used and has left. Only this tenant's data, by construction."""
    plan = Plan.objects.get(pk=tenant.plan_id)
    tasks = Task.objects.for_tenant(tenant)
    return UsageReport(
        plan=plan,
        budget=tenant_services.budget_usage(tenant, plan),
        rate_limits=ratelimit.peek(tenant, plan),
        queued_tasks=tasks.filter(state__in=PENDING_STATES).count(),
        running_tasks=tasks.filter(state=TaskState.RUNNING).count(),
    )
