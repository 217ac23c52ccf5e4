"""The only writers of Worker and Placement rows.

A worker process registers, heartbeats and marks itself stopped; operators
drain and undrain it. Drain is a request the worker confirms: ``draining``
until the worker has stopped taking tasks and has none in flight, then
``drained``. State changes are conditional UPDATEs, so a heartbeat never
overwrites an operator's drain or undrain that landed between its read and
its write.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.catalog.models import LLMModel
from apps.workers.models import Worker, WorkerState
from llmagentos.api_errors import ApiError

logger = logging.getLogger(__name__)


class WorkerNameInUse(Exception):
    """Another live process already runs under this worker name."""


class UnknownModels(ValueError):
    """Some of the model names a worker was asked to serve do not exist or are disabled."""


class WorkerGone(Exception):
    """The worker's row no longer exists: it cannot heartbeat."""


@dataclass(frozen=True)
class HeartbeatReply:
    state: str  # the state the operator wants: the worker takes tasks only when "active"
    model_names: tuple[str, ...]  # the models placed on it now, whose queues it consumes


def register_worker(
    *,
    name: str,
    host: str,
    pid: int,
    slots: int,
    device_info: dict[str, Any],
    model_names: Sequence[str] | None = None,
) -> Worker:
    """Create or take over the row named ``name``; place models on it.

    ``model_names`` None places every enabled model (and keeps following them
    at each heartbeat). A name still held by a live process elsewhere is
    refused. A drain survives a restart that was not a clean stop (a crash
    under the supervisor must not quietly undo an operator's drain); a clean
    stop ends it.
    """
    placed = _models_named(model_names)
    now = timezone.now()
    with transaction.atomic():
        existing = Worker.objects.select_for_update().filter(name=name).first()
        if existing is not None and _held_by_another_process(existing, host, pid):
            raise WorkerNameInUse(
                f"worker {name!r} is running as pid {existing.pid} on {existing.host} "
                f"(last heartbeat {existing.last_heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"
            )
        keeps_drain = existing is not None and existing.state in (WorkerState.DRAINING, WorkerState.DRAINED)
        worker, _ = Worker.objects.update_or_create(
            name=name,
            defaults={
                "host": host,
                "pid": pid,
                "slots": slots,
                "device_info": device_info,
                # DRAINING, not DRAINED: the new process has to confirm it again.
                "state": WorkerState.DRAINING if keeps_drain else WorkerState.ACTIVE,
                "in_flight": 0,
                "serves_all_models": model_names is None,
                "started_at": now,
                "last_heartbeat_at": now,
                "stopped_at": None,
            },
        )
        worker.models.set(placed)
    return worker


def _models_named(model_names: Sequence[str] | None) -> list[LLMModel]:
    enabled = LLMModel.objects.filter(enabled=True)
    if model_names is None:
        return list(enabled)
    found = list(enabled.filter(name__in=model_names))
    missing = sorted(set(model_names) - {model.name for model in found})
    if missing:
        raise UnknownModels(f"no enabled model named {', '.join(missing)}")
    return found


def _held_by_another_process(worker: Worker, host: str, pid: int) -> bool:
    if worker.state == WorkerState.STOPPED or worker.is_lost:
        return False
    if worker.host != host:
        return True
    # Same host: a restart after a crash finds its predecessor's pid dead (or,
    # in a restarted container, reused by itself).
    return worker.pid != pid and _pid_alive(worker.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def heartbeat(worker_id: uuid.UUID, *, in_flight: int, idle: bool, device_info: dict[str, Any]) -> HeartbeatReply:
    """Record that the worker is alive; tell it what it should be doing.

    ``idle``: the worker takes no tasks and has none in flight. A draining
    worker that says so becomes drained.
    """
    now = timezone.now()
    with transaction.atomic():
        worker = Worker.objects.filter(pk=worker_id).first()
        if worker is None:
            raise WorkerGone(f"worker {worker_id} no longer exists")
        fields: dict[str, Any] = {"last_heartbeat_at": now, "in_flight": in_flight, "device_info": device_info}
        if worker.state == WorkerState.DRAINING and idle:
            fields["state"] = WorkerState.DRAINED
        # Conditional on the state read above: an operator's drain/undrain in
        # between wins, and is picked up by the next heartbeat.
        if Worker.objects.filter(pk=worker_id, state=worker.state).update(**fields):
            worker.state = fields.get("state", worker.state)
        if worker.serves_all_models:
            worker.models.set(LLMModel.objects.filter(enabled=True))
        model_names = placed_model_names(worker)
    return HeartbeatReply(state=worker.state, model_names=model_names)


def placed_model_names(worker: Worker) -> tuple[str, ...]:
    return tuple(worker.models.order_by("name").values_list("name", flat=True))


def mark_stopped(worker_id: uuid.UUID) -> None:
    """The worker exited cleanly: nothing in flight, no longer lost when its heartbeats stop."""
    now = timezone.now()
    Worker.objects.filter(pk=worker_id).update(
        state=WorkerState.STOPPED, in_flight=0, stopped_at=now, last_heartbeat_at=now
    )


def drain(worker: Worker) -> Worker:
    """Ask a worker to take no new tasks (it finishes those in flight). Idempotent."""
    _refuse_if_stopped(worker, "drain")
    Worker.objects.filter(pk=worker.pk, state=WorkerState.ACTIVE).update(state=WorkerState.DRAINING)
    worker.refresh_from_db()
    logger.info("worker %s: drain requested (now %s)", worker.name, worker.state)
    return worker


def undrain(worker: Worker) -> Worker:
    """Let a draining or drained worker take tasks again. Idempotent."""
    _refuse_if_stopped(worker, "undrain")
    Worker.objects.filter(pk=worker.pk, state__in=(WorkerState.DRAINING, WorkerState.DRAINED)).update(
        state=WorkerState.ACTIVE
    )
    worker.refresh_from_db()
    logger.info("worker %s: undrained (now %s)", worker.name, worker.state)
    return worker


def _refuse_if_stopped(worker: Worker, action: str) -> None:
    if Worker.objects.filter(pk=worker.pk, state=WorkerState.STOPPED).exists():
        raise ApiError(409, "worker_stopped", f"worker {worker.name!r} is stopped; there is nothing to {action}")


def workers_for_model(model: LLMModel) -> QuerySet[Worker]:
    """Workers that take ``model``'s tasks now: placed on it, active, heartbeating."""
    return Worker.objects.alive().filter(state=WorkerState.ACTIVE, models=model)
