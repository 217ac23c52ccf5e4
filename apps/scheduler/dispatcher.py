"""The dispatch step: hand each model's workers only as many tasks as they have
free slots, in policy order (apps.scheduler.policy), passing over tenants at
their running cap — they keep their place.

One Dispatcher lives in the scheduler process (``manage.py run_scheduler``).
It keeps a FairScheduler per model in memory, because fair-share tags are
state that must outlive a single decision; the database stays the source of
truth: each round re-reads which tasks are ready (state queued, not yet
handed to a queue), adds the new ones and drops the ones that left (cancelled),
so a restarted scheduler rebuilds everything it needs.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone

from apps.scheduler.dispatch import hand_to_workers
from apps.scheduler.policy import FairScheduler
from apps.tasks.models import TERMINAL_STATES, Task, TaskState
from apps.tenants.models import TaskCharge, Tenant
from apps.workers.models import Worker, WorkerState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Charged:
    """What a dispatched task was charged in its model's policy, to correct at its end."""

    model_id: uuid.UUID
    tenant: str
    priority_class: str
    estimated_cost: float


class Dispatcher:
    def __init__(self, aging_seconds: float | None = None) -> None:
        self._aging = aging_seconds if aging_seconds is not None else settings.SCHEDULER_AGING_SECONDS
        self._policies: dict[uuid.UUID, FairScheduler] = {}
        self._ready: dict[uuid.UUID, uuid.UUID] = {}  # task id -> model id, as the policies hold them
        self._charged: dict[uuid.UUID, _Charged] = {}

    def run_once(self) -> int:
        """One round: learn what changed, then fill free slots. Returns tasks handed out."""
        now = timezone.now()
        self._sync_ready(now)
        self._correct_finished()
        return sum(self._fill(model_id, policy, now) for model_id, policy in self._policies.items() if len(policy))

    def _policy(self, model_id: uuid.UUID) -> FairScheduler:
        policy = self._policies.get(model_id)
        if policy is None:
            policy = self._policies[model_id] = FairScheduler(aging_seconds=self._aging)
        return policy

    def _sync_ready(self, now) -> None:
        rows = Task.objects.filter(state=TaskState.QUEUED, dispatched_at__isnull=True).values_list(
            "id", "model_id", "tenant_id", "priority", "max_tokens", "queued_at", "critical_path_rank"
        )
        ready = {row[0]: row for row in rows}
        for task_id in self._ready.keys() - ready.keys():  # cancelled, or handed out by another scheduler
            self._policies[self._ready.pop(task_id)].remove(task_id)
        new = [row for task_id, row in ready.items() if task_id not in self._ready]
        if not new:
            return
        costs = dict(
            TaskCharge.objects.filter(task_id__in=[row[0] for row in new]).values_list("task_id", "reserved_tokens")
        )
        weights = dict(
            Tenant.objects.filter(pk__in={row[2] for row in new}).values_list("id", "plan__weight")
        )
        for task_id, model_id, tenant_id, priority, max_tokens, queued_at, rank in new:
            self._policy(model_id).add(
                task_id,
                str(tenant_id),
                weights.get(tenant_id) or 1.0,
                priority,
                # The reserved worst case (prompt + max_tokens); max_tokens when none was reserved.
                max(1, costs.get(task_id) or max_tokens),
                now.timestamp(),
                rank=rank,
                enqueued_at=(queued_at or now).timestamp(),
            )
            self._ready[task_id] = model_id

    def _correct_finished(self) -> None:
        if not self._charged:
            return
        ended = Task.objects.filter(pk__in=list(self._charged), state__in=TERMINAL_STATES).values_list(
            "id", "prompt_tokens", "completion_tokens"
        )
        for task_id, prompt_tokens, completion_tokens in ended:
            charged = self._charged.pop(task_id)
            self._policy(charged.model_id).complete(
                charged.tenant, charged.priority_class, charged.estimated_cost,
                (prompt_tokens or 0) + (completion_tokens or 0),
            )

    def _fill(self, model_id: uuid.UUID, policy: FairScheduler, now) -> int:
        free = _free_slots(model_id)
        if free <= 0:
            return 0
        in_flight, caps = _tenant_load()
        capped = {tenant for tenant, cap in caps.items() if cap is not None and in_flight[tenant] >= cap}
        handed = 0
        while handed < free:
            entry = policy.next(now.timestamp(), capped)
            if entry is None:
                break
            self._ready.pop(entry.task_id, None)
            if not hand_to_workers(entry.task_id):
                continue  # cancelled since the last sync
            handed += 1
            self._charged[entry.task_id] = _Charged(model_id, entry.tenant, entry.priority_class, entry.estimated_cost)
            in_flight[entry.tenant] += 1
            cap = caps.get(entry.tenant)
            if cap is not None and in_flight[entry.tenant] >= cap:
                capped.add(entry.tenant)
        return handed


def _free_slots(model_id: uuid.UUID) -> int:
    """Slots of the active, heartbeating workers placed on the model, minus its tasks
    already running or handed to its queue."""
    slots = (
        Worker.objects.alive()
        .filter(state=WorkerState.ACTIVE, models__id=model_id)
        .aggregate(total=Sum("slots"))["total"]
        or 0
    )
    busy = Task.objects.filter(model_id=model_id).filter(_IN_FLIGHT).count()
    return slots - busy


_IN_FLIGHT = Q(state=TaskState.RUNNING) | Q(state=TaskState.QUEUED, dispatched_at__isnull=False)


def _tenant_load() -> tuple[Counter, dict[str, int | None]]:
    """Tasks each tenant has running or handed out (all models), and each tenant's running cap."""
    counts = Task.objects.filter(_IN_FLIGHT).values("tenant_id").annotate(n=Count("id")).values_list("tenant_id", "n")
    in_flight: Counter = Counter({str(tenant_id): n for tenant_id, n in counts})
    caps = {str(tenant_id): cap for tenant_id, cap in Tenant.objects.values_list("id", "plan__max_running")}
    return in_flight, caps
