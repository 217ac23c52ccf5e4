"""The only writers of Worker, Placement and VersionPlacement rows.

A worker process registers, heartbeats and marks itself stopped; operators
drain and undrain it. Drain is a request the worker confirms: ``draining``
until the worker has stopped taking tasks and has none in flight, then
``drained``. State changes are conditional UPDATEs, so a heartbeat never
overwrites an operator's drain or undrain that landed between its read and
its write.

What a worker serves is a set of queue specs (apps.scheduler.queues): "name"
for a model's tasks without a version, "name@version" for a version's. A
worker started with ``--models`` serves exactly those models: every live
version of each. A managed worker (no ``--models``) serves every enabled
model's unversioned queue, as before versions existed, and the versions the
placement run (apps.scheduler.placer.apply_placement: GPU bin packing, apps.scheduler.placement,
with as many replicas of each GPU version as the replica scaler,
apps.scheduler.autoscale, wants for its queue) put on it. A version is *live* while it is its model's current version or
has unfinished tasks; the old version of a rollover stays placed until its
last task ends, then leaves the heartbeat's reply and the worker unloads it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from apps.catalog.hooks import placement_inputs_changed
from apps.catalog.models import LLMModel, ModelVersion
from apps.core.errors import Conflict, InvalidInput, NotFound
from apps.tasks import services as task_services
from apps.tasks.models import TERMINAL_STATES, Task
from apps.workers.models import ReplicaTarget, VersionPlacement, Worker, WorkerState

logger = logging.getLogger(__name__)


class WorkerNameInUse(Conflict):
    """Another live process already runs under this worker name."""


class UnknownModels(InvalidInput):
    """Some of the model names a worker was asked to serve do not exist or are disabled."""


class WorkerGone(NotFound):
    """The worker's row no longer exists: it cannot heartbeat."""


@dataclass(frozen=True)
class HeartbeatReply:
    state: str  # the state the operator wants: the worker takes tasks only when "active"
    # The queue specs it consumes now: "name", or "name@version" for a placed version.
    model_names: tuple[str, ...]


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
    stop ends it. Taking over a row re-queues at once the tasks its previous
    process was running (apps.tasks.services.release_worker_leases).
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
    if existing is not None:
        # A restart (a crash under the supervisor, a SIGKILL): the attempts the old
        # process held are dead; their tasks are requeued now, not when their leases lapse.
        task_services.release_worker_leases(name)
    _replan()  # a new bin (or a new explicit host): place versions on it
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
        model_ids, specs = _serving(worker, live_models())
        if worker.serves_all_models:
            # Follows the catalog: a model enabled or disabled, a version whose
            # last task ended, are picked up here.
            # The stubs take only int primary keys; set() takes any pk (LLMModel's are UUIDs).
            worker.models.set(model_ids)  # type: ignore[arg-type]
    return HeartbeatReply(state=worker.state, model_names=specs)


def placed_model_names(worker: Worker) -> tuple[str, ...]:
    """The queue specs ``worker`` consumes now (see the module docstring)."""
    return _serving(worker, live_models())[1]


# --- Live versions and placement -------------------------------------------------------------


@dataclass(frozen=True)
class LiveModel:
    model: LLMModel
    unversioned: bool  # tasks without a version may still come: its plain "name" queue is served
    versions: tuple[ModelVersion, ...]  # the current version and those with unfinished tasks


def live_models() -> dict[uuid.UUID, LiveModel]:
    """Every model, by id, with the queues it needs served now. Managed workers and the
    placement take the enabled ones; a ``--models`` worker serves its models regardless."""
    models = list(LLMModel.objects.select_related("current_version"))
    unfinished = set(
        Task.objects.exclude(state__in=TERMINAL_STATES)
        .order_by()
        .values_list("model_id", "model_version_id")
        .distinct()
    )
    wanted = {version_id for _, version_id in unfinished if version_id is not None}
    wanted |= {model.current_version_id for model in models if model.current_version_id}
    versions: dict[uuid.UUID, list[ModelVersion]] = {}
    for version in ModelVersion.objects.filter(pk__in=wanted).select_related("model").order_by("version"):
        versions.setdefault(version.model_id, []).append(version)
    return {
        model.pk: LiveModel(
            model=model,
            unversioned=model.current_version_id is None or (model.pk, None) in unfinished,
            versions=tuple(versions.get(model.pk, ())),
        )
        for model in models
    }


def _serving(worker: Worker, live: dict[uuid.UUID, LiveModel]) -> tuple[set[uuid.UUID], tuple[str, ...]]:
    """(the models, the queue specs) ``worker`` serves now."""
    if worker.serves_all_models:
        placed: set[uuid.UUID] | None = set(worker.version_placements.values_list("version_id", flat=True))
        candidates = enabled_models(live)
    else:
        placed = None  # --models: every live version of those models
        candidates = [live[pk] for pk in worker.models.values_list("pk", flat=True) if pk in live]
    return _specs_of(candidates, placed)


def enabled_models(live: dict[uuid.UUID, LiveModel]) -> list[LiveModel]:
    return [entry for entry in live.values() if entry.model.enabled]


def _specs_of(
    candidates: Sequence[LiveModel], placed: set[uuid.UUID] | None
) -> tuple[set[uuid.UUID], tuple[str, ...]]:
    model_ids: set[uuid.UUID] = set()
    specs: list[str] = []
    for live in candidates:
        mine = [v for v in live.versions if placed is None or v.pk in placed]
        if live.unversioned:
            specs.append(live.model.name)
        specs.extend(version.spec for version in mine)
        if live.unversioned or mine:
            model_ids.add(live.model.pk)
    return model_ids, tuple(sorted(specs))


def unfinished_task_counts() -> dict[tuple[uuid.UUID, uuid.UUID | None], int]:
    """(model id, version id or None) -> how many of its tasks are waiting, queued or running."""
    rows = (
        Task.objects.exclude(state__in=TERMINAL_STATES)
        .order_by()
        .values_list("model_id", "model_version_id")
        .annotate(count=Count("pk"))
    )
    return {(model_id, version_id): count for model_id, version_id, count in rows}


def record_version_placements(
    wanted: Mapping[tuple[uuid.UUID, uuid.UUID], tuple[int | None, int]],
    managed: Sequence[Worker],
    existing: Sequence[VersionPlacement],
    live: dict[uuid.UUID, LiveModel],
) -> None:
    """Make the VersionPlacement rows what the placement run wants — (worker id,
    version id) -> (GPU index or None, bytes reserved there) — and the managed
    workers' model rows follow (apps.scheduler.placer is the only caller)."""
    stale = [
        row.pk for row in existing
        if wanted.get((row.worker_id, row.version_id)) != (row.gpu_index, row.gpu_memory_bytes)
    ]
    VersionPlacement.objects.filter(pk__in=stale).delete()
    kept = {(row.worker_id, row.version_id) for row in existing if row.pk not in stale}
    VersionPlacement.objects.bulk_create(
        VersionPlacement(worker_id=worker_id, version_id=version_id, gpu_index=gpu, gpu_memory_bytes=reserved)
        for (worker_id, version_id), (gpu, reserved) in wanted.items()
        if (worker_id, version_id) not in kept
    )
    for worker in managed:
        placed = {version_id for worker_id, version_id in wanted if worker_id == worker.pk}
        # The stubs take only int primary keys; set() takes any pk (LLMModel's are UUIDs).
        worker.models.set(_specs_of(enabled_models(live), placed)[0])  # type: ignore[arg-type]


def save_replica_target(target: ReplicaTarget, fields: Sequence[str]) -> None:
    """The replica scaler's new state for one version (apps.scheduler.placer decides it)."""
    target.save(update_fields=list(fields))


def lock_replica_targets(
    versions: Mapping[uuid.UUID, ModelVersion], placed: Mapping[uuid.UUID, Sequence[int]]
) -> dict[uuid.UUID, ReplicaTarget]:
    """The versions' ReplicaTarget rows, locked; created where missing.

    A new row wants the copies placed now (at least 1): a version seen by the
    scaler for the first time, e.g. right after an upgrade from "a replica on
    every worker with room", keeps what is loaded until the down rule removes it.
    """
    targets = ReplicaTarget.objects.select_for_update().filter(version_id__in=list(versions))
    found = {target.version_id: target for target in targets}
    missing = [pk for pk in versions if pk not in found]
    if missing:
        ReplicaTarget.objects.bulk_create(
            [ReplicaTarget(version_id=pk, desired=max(1, len(placed.get(pk, ())))) for pk in missing],
            ignore_conflicts=True,  # another run created it meanwhile: its row wins
        )
        found = {target.version_id: target for target in targets.all()}
    return found


def replica_targets() -> dict[uuid.UUID, ReplicaTarget]:
    """Every version's replica target by version id (for the operator views)."""
    return {target.version_id: target for target in ReplicaTarget.objects.all()}




def _replan() -> None:
    """The fleet changed: the placement (apps.scheduler.placer, registered on the
    hook) runs now; a failure is logged there, and the periodic run catches up."""
    placement_inputs_changed()


def mark_stopped(worker_id: uuid.UUID) -> None:
    """The worker exited cleanly: nothing in flight, no longer lost when its heartbeats stop."""
    now = timezone.now()
    Worker.objects.filter(pk=worker_id).update(
        state=WorkerState.STOPPED, in_flight=0, stopped_at=now, last_heartbeat_at=now
    )
    _replan()  # its versions go to the other workers


def drain(worker: Worker) -> Worker:
    """Ask a worker to take no new tasks (it finishes those in flight). Idempotent."""
    _refuse_if_stopped(worker, "drain")
    Worker.objects.filter(pk=worker.pk, state=WorkerState.ACTIVE).update(state=WorkerState.DRAINING)
    _replan()  # it takes nothing new: its versions need another home
    worker.refresh_from_db()
    logger.info("worker %s: drain requested (now %s)", worker.name, worker.state)
    return worker


def undrain(worker: Worker) -> Worker:
    """Let a draining or drained worker take tasks again. Idempotent."""
    _refuse_if_stopped(worker, "undrain")
    Worker.objects.filter(pk=worker.pk, state__in=(WorkerState.DRAINING, WorkerState.DRAINED)).update(
        state=WorkerState.ACTIVE
    )
    _replan()
    worker.refresh_from_db()
    logger.info("worker %s: undrained (now %s)", worker.name, worker.state)
    return worker


def _refuse_if_stopped(worker: Worker, action: str) -> None:
    if Worker.objects.filter(pk=worker.pk, state=WorkerState.STOPPED).exists():
        raise Conflict(f"worker {worker.name!r} is stopped; there is nothing to {action}", code="worker_stopped")


def workers_for_model(model: LLMModel) -> QuerySet[Worker]:
    """Workers that take ``model``'s tasks now: placed on it, active, heartbeating."""
    return Worker.objects.alive().filter(state=WorkerState.ACTIVE, models=model)
