"""The operator API's view of a worker (no logic beyond shape)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.catalog.api.serializers import OperatorModelSerializer, operator_model_representation
from apps.catalog.devices import Device
from apps.catalog.models import LLMModel, ModelVersion
from apps.core.openapi import list_of, object_kind
from apps.core.serializers import StrictSerializer
from apps.workers.models import LOST, RUNNING_STATES, ReplicaTarget, Worker, WorkerState


class WorkerListQuerySerializer(StrictSerializer):
    model = serializers.CharField(required=False, max_length=100)
    # Also the workers lost or stopped for longer than LOST_WORKER_RETENTION_SECONDS.
    history = serializers.BooleanField(required=False, default=False)


def worker_representation(worker: Worker) -> dict[str, Any]:
    device = worker.device_info or {}
    return {
        "id": str(worker.id),
        "object": "worker",
        "name": worker.name,
        "host": worker.host,
        "pid": worker.pid,
        "state": worker.state,  # what the worker and operators set
        "status": worker.status,  # the state, or "lost" when its heartbeats stopped
        "lost": worker.is_lost,
        "slots": worker.slots,
        "in_flight": worker.in_flight,
        "models": [model.name for model in worker.models.all()],
        "versions": [
            {"model": placed.version.spec, "gpu": placed.gpu_index, "gpu_memory_bytes": placed.gpu_memory_bytes}
            for placed in worker.version_placements.all()
        ],
        "serves_all_models": worker.serves_all_models,
        "gpus": device.get("gpus") or [],
        "cpu_count": device.get("cpu_count"),
        "ram_total": device.get("ram_total"),
        "ram_available": device.get("ram_available"),
        "started_at": worker.started_at,
        "last_heartbeat_at": worker.last_heartbeat_at,
        "stopped_at": worker.stopped_at,
    }


def model_placement_representation(
    model: LLMModel, unfinished: dict[tuple[Any, Any], int], targets: dict[Any, ReplicaTarget]
) -> dict[str, Any]:
    """A model as operators see it (the catalog's view), then its versions and where they
    run (``model`` with its granted tenants, versions, their placements and its placements
    prefetched); ``unfinished`` from services.unfinished_task_counts, ``targets`` from
    services.replica_targets."""
    versions = sorted(model.versions.all(), key=lambda v: v.created_at)
    problems = [f"{v.version}: {v.placement_error}" for v in versions if v.placement_error]
    return {
        **operator_model_representation(model),
        # Workers that are up; a stopped or lost worker's old rows say nothing about now.
        "workers": sorted(p.worker.name for p in model.placements.all() if p.worker.status in RUNNING_STATES),
        "unfinished_tasks": sum(n for (model_id, _), n in unfinished.items() if model_id == model.pk),
        "placement_error": "; ".join(problems) or None,
        "versions": [_version_representation(model, v, unfinished, targets.get(v.pk)) for v in versions],
    }


def _version_representation(
    model: LLMModel, version: ModelVersion, unfinished: dict[tuple[Any, Any], int], target: ReplicaTarget | None
) -> dict[str, Any]:
    placements = sorted(version.placements.all(), key=lambda p: p.worker.name)
    return {
        "version": version.version,
        "model": f"{model.name}@{version.version}",
        "current": model.current_version_id == version.pk,
        "artifact_uri": version.artifact_uri,
        "sha256": version.sha256,
        "size_bytes": version.size_bytes,
        "device": version.device or None,
        "gpu_memory_bytes": version.gpu_memory_bytes,
        "unfinished_tasks": unfinished.get((model.pk, version.pk), 0),
        "placements": [
            {"worker": p.worker.name, "gpu": p.gpu_index, "gpu_memory_bytes": p.gpu_memory_bytes}
            for p in placements
        ],
        # Copies placed now, and how many the replica scaler wants (None: not scaled,
        # e.g. a CPU version runs on every worker); wanted > placed means no room.
        "replicas": len(placements),
        "desired_replicas": target.desired if target is not None and version.device == "gpu" else None,
        "replica_change": (
            {"at": target.changed_at, "reason": target.reason}
            if target is not None and target.changed_at is not None else None
        ),
        "placement_error": version.placement_error or None,
        "placement_checked_at": version.placement_checked_at,
        "created_at": version.created_at,
    }


# --- Response shapes: what the functions above build, as /api/schema/ describes it -----------


class WorkerGpuSerializer(serializers.Serializer):
    """A GPU as the worker's last heartbeat reported it (null: the device did not say)."""

    index = serializers.IntegerField()
    name = serializers.CharField(allow_blank=True)
    memory_total = serializers.IntegerField(allow_null=True, help_text="bytes")
    memory_free = serializers.IntegerField(allow_null=True, help_text="bytes")
    utilization = serializers.IntegerField(allow_null=True, help_text="percent")


class WorkerVersionSerializer(serializers.Serializer):
    """A model version placed on the worker."""

    model = serializers.CharField(help_text="name@version")
    gpu = serializers.IntegerField(allow_null=True, help_text="the GPU's index; null: on the CPU")
    gpu_memory_bytes = serializers.IntegerField()


class WorkerSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = object_kind("worker")
    name = serializers.CharField()
    host = serializers.CharField()
    pid = serializers.IntegerField()
    state = serializers.ChoiceField(choices=WorkerState.choices, help_text="what the worker and operators set")
    status = serializers.ChoiceField(
        choices=[*WorkerState.values, LOST], help_text='the state, or "lost" when its heartbeats stopped'
    )
    lost = serializers.BooleanField()
    slots = serializers.IntegerField()
    in_flight = serializers.IntegerField()
    models = serializers.ListField(child=serializers.CharField())
    versions = WorkerVersionSerializer(many=True)
    serves_all_models = serializers.BooleanField()
    gpus = WorkerGpuSerializer(many=True)
    cpu_count = serializers.IntegerField(allow_null=True)
    ram_total = serializers.IntegerField(allow_null=True, help_text="bytes")
    ram_available = serializers.IntegerField(allow_null=True, help_text="bytes")
    started_at = serializers.DateTimeField()
    last_heartbeat_at = serializers.DateTimeField()
    stopped_at = serializers.DateTimeField(allow_null=True)


WorkerListSerializer = list_of(WorkerSerializer)


class VersionPlacementSerializer(serializers.Serializer):
    """A copy of a version on a worker."""

    worker = serializers.CharField(help_text="the worker's name")
    gpu = serializers.IntegerField(allow_null=True, help_text="the GPU's index; null: on the CPU")
    gpu_memory_bytes = serializers.IntegerField()


class ReplicaChangeSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    reason = serializers.CharField(allow_blank=True)


class PlacedVersionSerializer(serializers.Serializer):
    version = serializers.CharField()
    model = serializers.CharField(help_text="name@version")
    current = serializers.BooleanField()
    artifact_uri = serializers.CharField(allow_blank=True)
    sha256 = serializers.CharField(allow_blank=True)
    size_bytes = serializers.IntegerField(allow_null=True)
    device = serializers.ChoiceField(choices=Device.choices, allow_null=True)
    gpu_memory_bytes = serializers.IntegerField(allow_null=True)
    unfinished_tasks = serializers.IntegerField()
    placements = VersionPlacementSerializer(many=True)
    replicas = serializers.IntegerField(help_text="copies placed now")
    desired_replicas = serializers.IntegerField(
        allow_null=True, help_text="copies the replica scaler wants; null: not scaled (a CPU version runs everywhere)"
    )
    replica_change = ReplicaChangeSerializer(allow_null=True, help_text="the scaler's last change")
    placement_error = serializers.CharField(allow_null=True, help_text="why no worker can host it")
    placement_checked_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class ModelPlacementSerializer(OperatorModelSerializer):
    """A model, its versions and where they run."""

    workers = serializers.ListField(child=serializers.CharField(), help_text="names of the running workers serving it")
    unfinished_tasks = serializers.IntegerField()
    placement_error = serializers.CharField(allow_null=True)
    versions = PlacedVersionSerializer(many=True)


ModelPlacementListSerializer = list_of(ModelPlacementSerializer)
