"""Preemption's wiring: the dispatcher's last step of a round.

After a round has filled the free slots, a model that still has tasks waiting
and no free slot may have running generations that the waiting tasks outrank
(a higher class, or a tenant under its fair share while the running task's is
over it). ``preempt`` reads the tasks holding those models' slots (one
statement for all of them), lets the pure rules of
``apps.scheduler.preemption_policy`` choose the victims, and asks their
workers to suspend them at their next token boundary
(``apps.tasks.suspension.request_suspend``). A suspended task comes back to
the queue with its progress; the slot it frees goes to the policy's next task.

Only models whose adapter declares ``can_suspend`` are considered: the
dispatcher leaves the others out before anything is read, so their tasks
(openai_compatible's, for one) are never victims.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from django.conf import settings

from apps.catalog.plugins import registry
from apps.core import logs
from apps.scheduler import dispatch_reads
from apps.scheduler.policy import Entry, FairScheduler
from apps.scheduler.preemption_policy import Guards, Preemption, Running, Tags, choose_victims
from apps.tasks.models import TaskState
from apps.tasks.suspension import request_suspend

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Crowded:
    """A model with tasks waiting and no free slot: its slots and the first of its
    waiting tasks in the policy's order (as many as it has slots, capped tenants passed over).
    ``policy``: the model's policy, whose fair-share tags the choice compares (None: slot shares only)."""

    model_id: uuid.UUID
    slots: int
    waiting: Sequence[Entry]
    policy: FairScheduler | None = None


def can_suspend(adapter_name: str) -> bool:
    """Whether the adapter registered as ``adapter_name`` declares it can suspend
    (False for a name no adapter has: a routed model's, or a plugin since disabled)."""
    try:
        return registry.adapter_class(adapter_name).can_suspend
    except LookupError:
        return False


def guards() -> Guards:
    return Guards(settings.PREEMPT_MIN_RUN_SECONDS, settings.PREEMPT_MAX_PER_TASK)


def preempt(
    crowded: Sequence[Crowded], weights: Mapping[str, float], room: MutableMapping[str, int], now: datetime
) -> list[Preemption]:
    """Ask the workers to suspend the victims on ``crowded`` models (all of whose
    adapters can suspend); the preemptions asked for.

    ``weights``: tenant id (str) -> fair-share weight, for the waiting tasks'
    tenants (the running ones' come with the read). ``room``: tenant id -> tasks
    it may still start before its running cap, for the capped tenants with tasks
    waiting (changed: see ``choose_victims``).
    """
    if not crowded:
        return []
    holders = dispatch_reads.slot_holders([model.model_id for model in crowded])
    weights = dict(weights)
    by_model: dict[uuid.UUID, list[Running]] = {model.model_id: [] for model in crowded}
    for holder in holders:
        tenant = str(holder.tenant_id)
        weights.setdefault(tenant, holder.weight or 1.0)
        by_model[holder.model_id].append(Running(
            task_id=holder.id,
            tenant=tenant,
            priority_class=holder.priority,
            # Handed to a queue and not claimed yet: it holds a slot, with nothing to suspend.
            started_at=holder.started_at.timestamp() if holder.state == TaskState.RUNNING and holder.started_at
            else None,
            preemptions=holder.preemptions,
            suspendable=True,  # the caller left out the models whose adapter cannot suspend
            leaving=holder.suspend_requested or holder.cancel_requested,
        ))
    limits, at = guards(), now.timestamp()
    chosen: list[Preemption] = []
    for model in crowded:
        held = by_model[model.model_id]
        tags = None if model.policy is None else Tags(
            {(task.tenant, task.priority_class): model.policy.tag(task.tenant, task.priority_class) for task in held},
            model.policy.class_weights,
        )
        chosen += choose_victims(model.waiting, held, model.slots, at, weights, limits, room, tags)
    if not chosen:
        return []
    # The victims' ids are the task ids read above (the policy takes any hashable id).
    asked = set(request_suspend([cast(uuid.UUID, preemption.victim.task_id) for preemption in chosen]))
    done = [preemption for preemption in chosen if preemption.victim.task_id in asked]
    for preemption in done:
        victim, waiter = preemption.victim, preemption.waiter
        with logs.bound(task_id=str(victim.task_id)):
            logger.info(
                "preempting task %s (%s) for task %s (%s)",
                victim.task_id, victim.priority_class, waiter.task_id, waiter.effective_class,
            )
    return done
