"""The one place that runs what follows a task's changes of state.

Services of this app call ``announce_*`` where a task is submitted, becomes
ready, ends or is erased; the apps above register the effects they own in
their ``AppConfig.ready()``:

==================  ==========================  ===================================
hook                when it runs                registered by
==================  ==========================  ===================================
``checking``        before the submitting       webhooks: refuse a callback URL on
                    transaction                 a non-public address
``placing``         before the submitting       scheduler: a placement verdict for
                    transaction                 a version no run has checked
``submitting``      in the submitting           webhooks: keep the task's callback
                    transaction
``ending``          in the ending transaction   scheduler: settle the charge;
                                                webhooks: record the delivery
``ended``           after commit                streaming: end the stream;
                                                tasks: release or fail dependants;
                                                scheduler: wake the dispatcher
``ready``           after commit                scheduler: wake the dispatcher
``submitted``       after commit                scheduler: place an idle pinned version
``erased``          after commit                streaming: purge the chunk logs
``admit``           in the submitting           scheduler: quotas, budget
                    transaction (a Port)        reservation, rate limits
``admit_release``   in the releasing            scheduler: price the input as
                    transaction (a Port)        substituted, re-reserve the budget
``estimate_wait``   on read (a Port)            scheduler: queue position and
                                                estimated start
``estimate_model_   routing a submission        scheduler: a new task's estimated
wait``              (a Port)                    start on a candidate model
==================  ==========================  ===================================

After-commit effects are ``robust``: one that fails is logged and the others
still run; the periodic jobs (settlement sweep, stranded dependants, the
dispatcher's tick) catch up on what a lost effect left undone.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from django.db import transaction

from apps.core.hooks import Hook, Port

if TYPE_CHECKING:
    from apps.catalog.models import LLMModel, ModelVersion
    from apps.tasks.models import Task
    from apps.tasks.services import TaskRequest
    from apps.tenants.models import ApiKey, Tenant
    from apps.tenants.ratelimit import RateLimits


class Admission(Protocol):
    """What admitting a task returns: the id to insert it with, the buckets after it."""

    @property
    def task_id(self) -> uuid.UUID: ...

    @property
    def rate_limits(self) -> RateLimits: ...


Usage = dict[str, int]

checking: Hook[[Tenant, TaskRequest]] = Hook("task submission check (before its transaction)")
placing: Hook[[ModelVersion]] = Hook("task's model version to place (before its transaction)")
submitting: Hook[[Task, TaskRequest]] = Hook("task submitting (in its transaction)")
ending: Hook[[uuid.UUID, Usage | None]] = Hook("task ending (in its transaction)")
ended: Hook[[uuid.UUID, Task | None]] = Hook("task ended (after commit)")
ready: Hook[[]] = Hook("task ready (after commit)")
submitted: Hook[[Task]] = Hook("task submitted (after commit)")
erased: Hook[[Sequence[uuid.UUID]]] = Hook("tasks erased (after commit)")

# (tenant, key, request, the model's own count of the prompt's tokens or None)
admit: Port[[Tenant, ApiKey | None, TaskRequest, int | None], Admission] = Port("task admission")
estimate_wait: Port[[Task], Any] = Port("task wait estimate")
# Seconds a task submitted now to this model would wait before it starts: None unknown,
# math.inf when no worker serves it now (routed models: apps.tasks.routed).
estimate_model_wait: Port[[LLMModel], float | None] = Port("model wait estimate")
# (task being released, tenant loaded; its input with the parents' outputs in
# it; the model's own count of that prompt's tokens or None). Raises OverBudget
# (apps.core.errors) when the task no longer fits in the budget.
admit_release: Port[[Task, Mapping[str, Any], int | None], None] = Port("released task admission")


def announce_end(task_id: uuid.UUID, usage: Usage | None = None, ended_task: Task | None = None) -> None:
    """A task reached a terminal state in the current transaction.

    ``usage``: what the caller just recorded, if anything (saves reading it
    back); ``ended_task``: the task as the caller's UPDATE left it, tenant
    loaded (saves reading the row after the commit).

    Only inside the transaction that writes the end: the ``ending`` effects (the
    charge, the webhook's delivery) must commit or roll back with it."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("announce_end() runs the ending effects in the end's transaction: call it inside atomic()")
    ending(task_id, usage)
    for effect in ended.effects():
        transaction.on_commit(partial(effect, task_id, ended_task), robust=True)


def announce_ready(task: Task | None = None) -> None:
    """A task became ``queued`` (submitted without parents, or released)."""
    for effect in ready.effects():
        transaction.on_commit(effect, robust=True)


def announce_submitted(task: Task) -> None:
    for effect in submitted.effects():
        transaction.on_commit(partial(effect, task), robust=True)


def announce_erased(task_ids: Sequence[uuid.UUID]) -> None:
    ids = list(task_ids)
    for effect in erased.effects():
        transaction.on_commit(partial(effect, ids), robust=True)
