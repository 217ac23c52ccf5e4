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
        self._routes: dict[uuid.UUID, tuple[str, str | None, str]] = {}  # task id -> its queue (hand_to_workers)
        self._charged: dict[uuid.UUID, _Charged] = {}

    def run_once(self) -> int:
        """One round: learn what changed, then fill free slots. Returns tasks handed out."""
        now = timezone.now()
        self._sync_ready(now)
        self._correct_finished()
        waiting = [(model_id, policy) for model_id, policy in self._policies.items() if len(policy)]
        if not waiting:
            return 0
        load = _Load.read()
        return sum(self._fill(model_id, policy, now, load) for model_id, policy in waiting)

    def _policy(self, model_id: uuid.UUID) -> FairScheduler:
        policy = self._policies.get(model_id)
        if policy is None:
            policy = self._policies[model_id] = FairScheduler(
                aging_seconds=self._aging, idle_credit=settings.SCHEDULER_IDLE_CREDIT_TOKENS
            )
        return policy

    def _sync_ready(self, now) -> None:
        rows = Task.objects.filter(state=TaskState.QUEUED, dispatched_at__isnull=True).values_list(
            "id", "model_id", "tenant_id", "priority", "max_tokens", "queued_at", "critical_path_rank",
            "model__name", "model_version__version",
        )
        ready = {row[0]: row for row in rows}
        for task_id in self._ready.keys() - ready.keys():  # cancelled, or handed out by another scheduler
            self._policies[self._ready.pop(task_id)].remove(task_id)
            self._routes.pop(task_id, None)
        new = [row for task_id, row in ready.items() if task_id not in self._ready]
        if not new:
            return
        costs = dict(
            TaskCharge.objects.filter(task_id__in=[row[0] for row in new]).values_list("task_id", "reserved_tokens")
        )
        weights = dict(
            Tenant.objects.filter(pk__in={row[2] for row in new}).values_list("id", "plan__weight")
        )
        for task_id, model_id, tenant_id, priority, max_tokens, queued_at, rank, model_name, version in new:
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
            self._routes[task_id] = (model_name, version, priority)

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

    def _fill(self, model_id: uuid.UUID, policy: FairScheduler, now, load: _Load) -> int:
        free = load.free_slots(model_id)
        if free <= 0:
            return 0
        in_flight, caps = load.in_flight, load.caps()
        capped = {tenant for tenant, cap in caps.items() if cap is not None and in_flight[tenant] >= cap}
        handed = 0
        while handed < free:
            entry = policy.next(now.timestamp(), capped)
            if entry is None:
                break
            self._ready.pop(entry.task_id, None)
            if not hand_to_workers(entry.task_id, self._routes.pop(entry.task_id, None)):
                continue  # cancelled since the last sync
            handed += 1
            load.busy[model_id] += 1
            self._charged[entry.task_id] = _Charged(model_id, entry.tenant, entry.priority_class, entry.estimated_cost)
            in_flight[entry.tenant] += 1
            cap = caps.get(entry.tenant)
            if cap is not None and in_flight[entry.tenant] >= cap:
                capped.add(entry.tenant)
        return handed


_IN_FLIGHT = Q(state=TaskState.RUNNING) | Q(state=TaskState.QUEUED, dispatched_at__isnull=False)


class _Load:
    """What a round fills against, read once per round for all models (a round
    runs after every submission and completion, so its fixed cost is paid per
    task): the tasks running or handed to a queue, by model and by tenant; the
    slots of each model's active, heartbeating workers; the tenants' running caps
    (read only when some model has a free slot)."""

    def __init__(self, busy: Counter, in_flight: Counter, slots: dict[uuid.UUID, int]) -> None:
        self.busy = busy  # model id -> tasks running or handed out
        self.in_flight = in_flight  # tenant id (str) -> the same, all models
        self.slots = slots
        self._caps: dict[str, int | None] | None = None

    @classmethod
    def read(cls) -> _Load:
        busy: Counter = Counter()
        in_flight: Counter = Counter()
        rows = Task.objects.filter(_IN_FLIGHT).values("model_id", "tenant_id").annotate(n=Count("id"))
        for model_id, tenant_id, n in rows.values_list("model_id", "tenant_id", "n"):
            busy[model_id] += n
            in_flight[str(tenant_id)] += n
        slots = dict(
            Worker.objects.alive()
            .filter(state=WorkerState.ACTIVE)
            .values("models__id")
            .annotate(total=Sum("slots"))
            .values_list("models__id", "total")
        )
        return cls(busy, in_flight, slots)

    def free_slots(self, model_id: uuid.UUID) -> int:
        """Slots of the active, heartbeating workers placed on the model, minus its
        tasks already running or handed to its queue."""
        return (self.slots.get(model_id) or 0) - self.busy[model_id]

    def caps(self) -> dict[str, int | None]:
        """Each tenant's running cap."""
        if self._caps is None:
            self._caps = {str(tenant_id): cap for tenant_id, cap in Tenant.objects.values_list("id", "plan__max_running")}
        return self._caps
