"""The dispatch step: hand each model's workers only as many tasks as they have
free slots, in policy order (apps.scheduler.policy), passing over tenants at
their running cap — they keep their place — and paused tenants (a cap of 0
until they are resumed: apps.tenants.services.pause_tenant).

One Dispatcher lives in the scheduler process (``manage.py run_scheduler``).
It keeps a FairScheduler per model in memory, because fair-share tags are
state that must outlive a single decision; the database stays the source of
truth: each round re-reads which tasks are ready (state queued, not yet
handed to a queue), adds the new ones and drops the ones that left (cancelled),
so a restarted scheduler rebuilds everything it needs.

After filling the free slots, a round preempts (apps.scheduler.preemption):
on a model with tasks waiting and no free slot it asks the running
generations that the waiting tasks outrank to suspend; they come back ready
with their progress and are charged per segment (``_Charged``), so a task
suspended k times is charged about once in total.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import cast

from django.conf import settings
from django.utils import timezone

from apps.core import logs
from apps.scheduler import dispatch_reads, preemption
from apps.scheduler.dispatch import hand_to_workers
from apps.scheduler.policy import FairScheduler
from apps.tasks.models import TERMINAL_STATES
from apps.workers.models import lost_cutoff

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Charged:
    """What a dispatched task was charged in its model's policy, to correct at its end
    or when it comes back ready (suspended, or retried) before it.

    ``progress_tokens``: the completion tokens it had generated when it was
    dispatched (those of its earlier segments, already accounted for).
    """

    model_id: uuid.UUID
    tenant: str
    priority_class: str
    estimated_cost: float
    progress_tokens: int = 0


class Dispatcher:
    def __init__(self, aging_seconds: float | None = None) -> None:
        self._aging = aging_seconds if aging_seconds is not None else settings.SCHEDULER_AGING_SECONDS
        self._policies: dict[uuid.UUID, FairScheduler] = {}
        self._ready: dict[uuid.UUID, uuid.UUID] = {}  # task id -> model id, as the policies hold them
        self._routes: dict[uuid.UUID, tuple[str, str | None, str]] = {}  # task id -> its queue (hand_to_workers)
        self._request_ids: dict[uuid.UUID, str] = {}  # task id -> its submitting request's id, for the log
        self._progress: dict[uuid.UUID, int] = {}  # task id -> its progress_tokens when it became ready
        self._charged: dict[uuid.UUID, _Charged] = {}
        self._caps: dict[str, int | None] = {}  # tenant id (str) -> running cap, as of the last sync
        self._weights: dict[str, float] = {}  # tenant id (str) -> fair-share weight, as of the last sync
        self._adapters: dict[uuid.UUID, str] = {}  # model id -> its adapter's name, as of the last sync

    def run_once(self) -> int:
        """One round: learn what changed, then fill free slots. Returns tasks handed out."""
        now = timezone.now()
        self._sync_ready(now)
        self._correct_finished()
        waiting = [(model_id, policy) for model_id, policy in self._policies.items() if len(policy)]
        if not waiting:
            return 0
        load = _Load.read()
        handed = sum(self._fill(model_id, policy, now, load) for model_id, policy in waiting)
        if settings.PREEMPTION_ENABLED:
            handed += self._preempt(waiting, now, load)
        return handed

    def has_waiting(self) -> bool:
        """Whether, as of the last round, some ready task waits for a free slot."""
        return any(len(policy) for policy in self._policies.values())

    def tag(self, model_id: uuid.UUID, tenant: str, priority_class: str) -> float:
        """A tenant's fair-share tag in a model's policy (FairScheduler.tag): what it has
        been charged there so far, in the policy's units; 0.0 before anything was."""
        policy = self._policies.get(model_id)
        return policy.tag(tenant, priority_class) if policy is not None else 0.0

    def _policy(self, model_id: uuid.UUID) -> FairScheduler:
        policy = self._policies.get(model_id)
        if policy is None:
            policy = self._policies[model_id] = FairScheduler(
                aging_seconds=self._aging, idle_credit=settings.SCHEDULER_IDLE_CREDIT_TOKENS
            )
        return policy

    def _sync_ready(self, now) -> None:
        # One statement for everything a round needs to know of the ready tasks,
        # new or not: their queue, their reservation, their tenant's weight and
        # running cap (a round runs after every submission: its fixed cost is
        # paid per task at low load).
        ready = {task.id: task for task in dispatch_reads.ready_tasks()}
        # The running caps of the tenants with ready tasks: the only ones a round can pass over.
        # A paused tenant's cap is 0: its tasks keep their place and wait for its resumption.
        self._caps = {
            str(task.tenant_id): task.max_running if task.tenant_active else 0 for task in ready.values()
        }
        self._weights = {str(task.tenant_id): task.weight or 1.0 for task in ready.values()}
        self._adapters = {task.model_id: task.adapter for task in ready.values()}
        for task_id in self._ready.keys() - ready.keys():  # cancelled, or handed out by another scheduler
            self._policies[self._ready.pop(task_id)].remove(task_id)
            self._routes.pop(task_id, None)
            self._request_ids.pop(task_id, None)
            self._progress.pop(task_id, None)
        for task in (task for task_id, task in ready.items() if task_id not in self._ready):
            self._policy(task.model_id).add(
                task.id,
                str(task.tenant_id),
                task.weight or 1.0,
                task.priority,
                # The reserved worst case (prompt + max_tokens), less what earlier segments
                # generated (a suspended task is charged what is left); max_tokens when none
                # was reserved.
                max(1, (task.reserved_tokens or task.max_tokens) - task.progress_tokens),
                now.timestamp(),
                rank=task.critical_path_rank,
                # A task whose time slice ended waits behind its flow's tasks (turn_at).
                enqueued_at=(task.turn_at or task.queued_at or now).timestamp(),
            )
            self._ready[task.id] = task.model_id
            self._routes[task.id] = (task.model_name, task.version, task.priority)
            self._request_ids[task.id] = task.request_id
            self._progress[task.id] = task.progress_tokens
            charged = self._charged.pop(task.id, None)
            if charged is not None:
                # Back before its end (suspended, or queued again for a retry): correct its
                # charge now to the tokens of the segment that ended (none for a retry, which
                # starts over), as ``complete`` does at a task's end. Corrected after the
                # add: the refund must not be undone by lifting an emptied flow's tag.
                self._policy(charged.model_id).complete(
                    charged.tenant, charged.priority_class, charged.estimated_cost,
                    max(0, task.progress_tokens - charged.progress_tokens),
                )

    def _correct_finished(self) -> None:
        if not self._charged:
            return
        ended = dispatch_reads.ended_usage(list(self._charged), TERMINAL_STATES)
        for task_id, prompt_tokens, completion_tokens in ended:
            charged = self._charged.pop(task_id)
            # Less the completion tokens of the segments already accounted for (see _sync_ready).
            actual = (prompt_tokens or 0) + (completion_tokens or 0) - charged.progress_tokens
            self._policy(charged.model_id).complete(
                charged.tenant, charged.priority_class, charged.estimated_cost, max(0, actual),
            )

    def _fill(self, model_id: uuid.UUID, policy: FairScheduler, now, load: _Load, slots: int | None = None) -> int:
        """Hand out the model's free slots (``slots``: that many instead, being freed) in policy order."""
        free = load.free_slots(model_id) if slots is None else slots
        if free <= 0:
            return 0
        in_flight, caps = load.in_flight, self._caps
        capped = {tenant for tenant, cap in caps.items() if cap is not None and in_flight[tenant] >= cap}
        handed = 0
        while handed < free:
            entry = policy.next(now.timestamp(), capped)
            if entry is None:
                break
            task_id = entry.task_id
            # The policy takes any hashable id; the ones added here are task ids (_sync_ready).
            assert isinstance(task_id, uuid.UUID), f"not a task id: {task_id!r}"
            self._ready.pop(task_id, None)
            route = self._routes.pop(task_id, None)
            progress = self._progress.pop(task_id, 0)
            with logs.bound(task_id=str(task_id), request_id=self._request_ids.pop(task_id, "")):
                if not hand_to_workers(task_id, route):
                    continue  # cancelled since the last sync
                model_name, _, priority = route or ("its model", None, "-")
                logger.info("dispatched to the workers of %s (priority %s)", model_name, priority)
            handed += 1
            load.busy[model_id] += 1
            self._charged[task_id] = _Charged(
                model_id, entry.tenant, entry.priority_class, entry.estimated_cost, progress
            )
            in_flight[entry.tenant] += 1
            cap = caps.get(entry.tenant)
            if cap is not None and in_flight[entry.tenant] >= cap:
                capped.add(entry.tenant)
        return handed

    def _preempt(self, waiting: list[tuple[uuid.UUID, FairScheduler]], now, load: _Load) -> int:
        """Suspend running generations that tasks still waiting on a full model outrank,
        and hand out the slots they free at once; returns the tasks handed out.

        Nothing is read unless some model whose adapter can suspend still has tasks
        waiting and no free slot."""
        crowded = [
            (model_id, policy, load.slots.get(model_id) or 0) for model_id, policy in waiting
            if len(policy) and load.free_slots(model_id) <= 0 and load.slots.get(model_id)
            and preemption.can_suspend(self._adapters.get(model_id, ""))
        ]
        if not crowded:
            return 0
        in_flight = load.in_flight
        # What the capped tenants may still start (after this round's hand-outs):
        # a tenant at its cap is passed over, as _fill passes it over.
        room = {tenant: max(0, cap - in_flight[tenant]) for tenant, cap in self._caps.items() if cap is not None}
        capped = {tenant for tenant, left in room.items() if left <= 0}
        at = now.timestamp()
        asked = preemption.preempt(
            [preemption.Crowded(model_id, slots, policy.peek_order(at, capped, slots), policy)
             for model_id, policy, slots in crowded],
            self._weights, room, now,
        )
        # The slots being freed are handed out now, in policy order, rather than at the round
        # after the victims stop: the worker holding a victim takes the next task off its queue
        # as soon as the slot is free (a round trip through the scheduler less before the
        # urgent task's first token). Until then the model counts one task over its slots.
        waiters = [cast(uuid.UUID, p.waiter.task_id) for p in asked]  # the policy holds task ids (_sync_ready)
        freeing = Counter(self._ready[task_id] for task_id in waiters if task_id in self._ready)
        policies = dict(waiting)
        return sum(self._fill(model_id, policies[model_id], now, load, slots=n) for model_id, n in freeing.items())


class _Load:
    """What a round fills against, read once per round for all models (a round
    runs after every submission and completion, so its fixed cost is paid per
    task): the tasks running or handed to a queue, by model and by tenant; the
    slots of each model's active, heartbeating workers. (The tenants' running
    caps come with the ready tasks: Dispatcher._sync_ready.)"""

    def __init__(self, busy: Counter, in_flight: Counter, slots: dict[uuid.UUID, int]) -> None:
        self.busy = busy  # model id -> tasks running or handed out
        self.in_flight = in_flight  # tenant id (str) -> the same, all models
        self.slots = slots

    @classmethod
    def read(cls) -> _Load:
        busy: Counter = Counter()
        in_flight: Counter = Counter()
        for model_id, tenant_id, n in dispatch_reads.in_flight():
            busy[model_id] += n
            in_flight[str(tenant_id)] += n
        return cls(busy, in_flight, dispatch_reads.slots_by_model(lost_cutoff()))

    def free_slots(self, model_id: uuid.UUID) -> int:
        """Slots of the active, heartbeating workers placed on the model, minus its
        tasks already running or handed to its queue."""
        return (self.slots.get(model_id) or 0) - self.busy[model_id]
