"""The placement run: the pure policies (apps.scheduler.placement_program: GPU
placement as an integer program, apps.scheduler.placement's first-fit
decreasing its fallback; apps.scheduler.autoscale: how many replicas) applied to the live
fleet, their verdicts recorded through the apps that own the rows (workers:
placements and replica state; catalog: a version's placement error).

It runs from explicit calls — ``apps.catalog.hooks.placement_inputs_changed``
fires when a model, a version or a worker changes (registered in
apps.scheduler.apps), a task pinned to an idle version asks for it — and
periodically from the scheduler (every few seconds) to catch up.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from apps.catalog import services as catalog_services
from apps.catalog.models import ModelVersion
from apps.scheduler import autoscale, placement, placement_program
from apps.tasks import services as task_services
from apps.tasks.models import Task, TaskState
from apps.workers import services as worker_services
from apps.workers.models import Placement, VersionPlacement, Worker, WorkerState
from apps.workers.services import live_models

logger = logging.getLogger(__name__)


NO_NEEDS = "its resource needs are unknown: set its device and GPU memory"


def apply_placement(
    now: datetime | None = None,
    rules: autoscale.ScalingRules | None = None,
    also: Sequence[ModelVersion] = (),
) -> placement.Plan:
    """Place the live model versions on the active managed workers; record the verdicts.

    Bins are the GPUs of alive, active workers without ``--models``, each
    with its free memory as last reported plus what earlier runs reserved on
    it (those models may be loaded, and count in "used"), never more than
    its total. How many copies of each GPU version to place is the replica
    scaler's decision at ``now`` (``_scale_replicas``; ``rules`` default to
    ``scaling_rules()``). A version left out is reported on its row
    (``placement_error``, shown in the admin and /api/v1/ops/models) unless a
    ``--models`` worker serves its model; new tasks for it are refused with
    503 (catalog.services.refuse_unplaceable). With no active worker at all
    nothing is reported: that is an outage, not a lack of room, and tasks
    wait as they would for a model without versions.

    ``also``: versions to place as if they were live (a submission pinned to
    one asks for its verdict before it is accepted: ``judge_version``).
    """
    now = now or timezone.now()
    with transaction.atomic():
        # Locked in one order: concurrent runs take turns instead of writing over each other.
        managed = list(
            Worker.objects.alive().filter(state=WorkerState.ACTIVE, serves_all_models=True)
            .order_by("pk").select_for_update()
        )
        explicit_hosts = set(
            Placement.objects.filter(
                worker__in=Worker.objects.alive().filter(state=WorkerState.ACTIVE, serves_all_models=False)
            ).values_list("model_id", flat=True)
        )
        live = live_models()
        versions = {v.spec: v for entry in worker_services.enabled_models(live) for v in entry.versions}
        versions.update({v.spec: v for v in also if v.model.enabled and v.spec not in versions})
        # Oldest first: each version's primary, then its replicas in the order they were added.
        existing = list(VersionPlacement.objects.select_related("version__model").order_by("placed_at", "pk"))
        reserved: dict[tuple[uuid.UUID, int], int] = {}
        current: dict[str, list[placement.Slot]] = {}
        for row in existing:
            if row.gpu_index is not None:
                key = (row.worker_id, row.gpu_index)
                reserved[key] = reserved.get(key, 0) + row.gpu_memory_bytes
            current.setdefault(row.version.spec, []).append(placement.Slot(str(row.worker_id), row.gpu_index))
        errors: dict[uuid.UUID, str] = {}
        items = []
        gpu_versions = {spec: version for spec, version in versions.items() if version.device == placement.GPU}
        load = version_load([version.pk for version in gpu_versions.values()])
        for spec, version in versions.items():
            if version.device:
                queued, running = load.get(version.pk, (0, 0))
                items.append(placement.Item(spec, version.device, version.gpu_memory_bytes or 0, queued + running))
            else:
                errors[version.pk] = NO_NEEDS
        desired, scaled = _scale_replicas(
            gpu_versions, existing, {w.pk: w.slots for w in managed}, load, now, rules or scaling_rules()
        )
        # The program (served demand, then fewest moves), or FFD when it finds nothing better in time.
        plan = placement_program.plan(
            items,
            [placement.Bin(str(w.pk), _free_gpus(w, reserved), slots=w.slots) for w in managed],
            current,
            desired=desired,
            time_limit=settings.PLACEMENT_SOLVER_TIME_LIMIT_SECONDS,
        )
        for short in plan.short:
            # Logged when the wish is new; the ops API shows it (desired vs placed) all along.
            if short.item in scaled:
                logger.info("placement: %s: %s", short.item, short)
        worker_services.record_version_placements(_wanted(plan, versions), managed, existing, live)
        errors.update({versions[u.item].pk: u.reason for u in plan.unplaced})
        model_of = {v.pk: v.model_id for v in versions.values()}
        errors = {pk: reason for pk, reason in errors.items() if model_of[pk] not in explicit_hosts}
        if managed or explicit_hosts:
            catalog_services.record_placement(errors, [v.pk for v in versions.values()])
            for spec, version in versions.items():
                if version.pk in errors:
                    logger.warning("placement: no worker can host %s: %s", spec, errors[version.pk])
    return plan


def scaling_rules() -> autoscale.ScalingRules:
    """The replica scaler's thresholds: apps.scheduler.autoscale's defaults, with any of them
    overridden by ``settings.REPLICA_SCALING`` (the REPLICA_* environment variables)."""
    return autoscale.ScalingRules(**settings.REPLICA_SCALING)


def _scale_replicas(
    versions: Mapping[str, ModelVersion],
    existing: Sequence[VersionPlacement],
    slots_of: Mapping[uuid.UUID, int],
    load: Mapping[uuid.UUID, tuple[int, int]],
    now: datetime,
    rules: autoscale.ScalingRules,
) -> tuple[dict[str, int], set[str]]:
    """Run the replica scaler for each GPU version and save its state.

    Returns (copies wanted by spec, the specs whose count changed now).
    ``existing`` are the placement rows oldest first; ``slots_of`` the task
    slots of the workers being planned on (a copy on any other worker serves
    no one); ``load`` (tasks queued, running) by version id (``version_load``).
    The state lives in ReplicaTarget rows, locked for the run, because
    placement runs in several processes; a decision is a function of that
    state and ``now``, so runs that race compute the same count, not one each.
    """
    if not versions:
        return {}, set()
    by_id = {version.pk: version for version in versions.values()}
    replica_slots: dict[uuid.UUID, list[int]] = {}
    for row in existing:
        if row.gpu_index is not None and row.version_id in by_id and row.worker_id in slots_of:
            replica_slots.setdefault(row.version_id, []).append(slots_of[row.worker_id])
    targets = worker_services.lock_replica_targets(by_id, replica_slots)
    desired: dict[str, int] = {}
    changed: set[str] = set()
    for version_id, target in targets.items():
        spec = by_id[version_id].spec
        state = autoscale.ReplicaState(
            target.desired, _seconds(target.long_since), _seconds(target.idle_since), _seconds(target.changed_at)
        )
        queued, running = load.get(version_id, (0, 0))
        decision = autoscale.decide(
            state, autoscale.Load(queued, running, tuple(replica_slots.get(version_id, ()))), now.timestamp(), rules
        )
        desired[spec] = decision.state.desired
        if decision.state == state:
            continue  # nothing to write: the common case, every few seconds
        target.desired = decision.state.desired
        target.long_since = _moment(decision.state.long_since)
        target.idle_since = _moment(decision.state.idle_since)
        target.changed_at = _moment(decision.state.changed_at)
        fields = ["desired", "long_since", "idle_since", "changed_at"]
        if decision.changed:
            changed.add(spec)
            target.reason = decision.reason
            fields.append("reason")
            logger.info("%s: %d → %d replicas: %s", spec, decision.previous, decision.state.desired, decision.reason)
        worker_services.save_replica_target(target, fields)
    return desired, changed


def version_load(version_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
    """Version id -> (tasks queued, tasks running), for the versions with any; one grouped query."""
    rows = (
        Task.objects.filter(state__in=(TaskState.QUEUED, TaskState.RUNNING), model_version_id__in=list(version_ids))
        .order_by()
        .values_list("model_version_id")
        .annotate(
            queued=Count("pk", filter=Q(state=TaskState.QUEUED)),
            running=Count("pk", filter=Q(state=TaskState.RUNNING)),
        )
    )
    return {version_id: (queued, running) for version_id, queued, running in rows}


def _seconds(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def _moment(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds is not None else None


def _free_gpus(worker: Worker, reserved: dict[tuple[uuid.UUID, int], int]) -> tuple[placement.Gpu, ...]:
    gpus = []
    for gpu in (worker.device_info or {}).get("gpus") or []:
        index, total, free = gpu.get("index"), gpu.get("memory_total"), gpu.get("memory_free")
        if not isinstance(index, int) or not isinstance(total, int):
            continue  # a device that reports no memory cannot be planned on
        available = total if not isinstance(free, int) else min(total, free + reserved.get((worker.pk, index), 0))
        gpus.append(placement.Gpu(index, max(available, 0)))
    return tuple(gpus)


def _wanted(
    plan: placement.Plan, versions: Mapping[str, ModelVersion]
) -> dict[tuple[uuid.UUID, uuid.UUID], tuple[int | None, int]]:
    """(worker id, version id) -> (GPU index or None, bytes reserved there), from the plan."""
    wanted: dict[tuple[uuid.UUID, uuid.UUID], tuple[int | None, int]] = {}
    for spec, slots in plan.slots.items():
        version = versions[spec]
        for slot in slots:
            reserved = (version.gpu_memory_bytes or 0) if slot.gpu is not None else 0
            wanted[(uuid.UUID(slot.bin), version.pk)] = (slot.gpu, reserved)
    return wanted


def replan() -> None:
    """Run the placement now; a failure is logged, not raised: the periodic run catches up."""
    try:
        apply_placement()
    except Exception:
        logger.exception("placement run failed; the next periodic run retries")


# A pinned version's verdict younger than this is trusted at submission; older, or
# none (a version neither current nor with unfinished tasks is not judged by the
# runs), and the placement runs for it first. Twice the scheduler's placement round.
VERDICT_SECONDS = 10.0


def judge_version(version: ModelVersion) -> None:
    """apps.tasks.lifecycle ``placing``: before a task pinned to ``version`` is accepted,
    make sure its placement verdict (``placement_error``, refreshed on ``version``) is
    current, so that a version no active worker can hold is refused from its first task
    on (apps.catalog.services.refuse_unplaceable), every time.

    A model's current version is judged by every run, which catalog and fleet
    changes trigger: nothing to do. Nor for a version placed on a worker already."""
    found = ModelVersion.objects.select_related("model").filter(pk=version.pk).first()
    if found is None or found.model.current_version_id == found.pk:
        return
    checked = found.placement_checked_at
    if checked is not None and (timezone.now() - checked).total_seconds() < VERDICT_SECONDS:
        return
    if not found.placement_error and VersionPlacement.objects.filter(version_id=found.pk).exists():
        return
    try:
        apply_placement(also=[found])
    except Exception:  # no verdict: the task is accepted; the runs judge it from then on
        logger.exception("placement run for %s failed", found.spec)
        return
    version.refresh_from_db(fields=["placement_error", "placement_checked_at", "unplaceable_since"])


def fail_unplaceable(now: datetime | None = None) -> int:
    """Fail the queued tasks of versions no active worker has been able to hold for
    UNPLACEABLE_TIMEOUT_SECONDS (a periodic job); returns how many. A worker that can
    hold one appears: the placement run clears its error, and its tasks stay."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.UNPLACEABLE_TIMEOUT_SECONDS)
    stuck = dict(
        ModelVersion.objects.filter(unplaceable_since__lte=cutoff)
        .exclude(placement_error="")
        .values_list("pk", "placement_error")
    )
    if not stuck:
        return 0
    failed = task_services.fail_unplaceable(list(stuck), stuck)
    if failed:
        logger.warning("%d queued tasks failed: their model version has had no possible host for %ss",
                       failed, settings.UNPLACEABLE_TIMEOUT_SECONDS)
    return failed


def place_pinned_version(task: Task) -> None:
    """A task pinned to a version other than its model's current one makes that
    version live; if it is placed nowhere yet, place it now (apps.tasks.lifecycle
    ``submitted``). Most tasks name no version, or the current one: no query."""
    if not task.model_version_id or task.model_version_id == task.model.current_version_id:
        return
    if not VersionPlacement.objects.filter(version_id=task.model_version_id).exists():
        replan()
