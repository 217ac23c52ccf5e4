"""The operator API's view of a worker (no logic beyond shape)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.tasks.api.serializers import StrictSerializer
from apps.workers.models import Worker


class WorkerListQuerySerializer(StrictSerializer):
    model = serializers.CharField(required=False, max_length=100)


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
        "serves_all_models": worker.serves_all_models,
        "gpus": device.get("gpus") or [],
        "cpu_count": device.get("cpu_count"),
        "ram_total": device.get("ram_total"),
        "ram_available": device.get("ram_available"),
        "started_at": worker.started_at,
        "last_heartbeat_at": worker.last_heartbeat_at,
        "stopped_at": worker.stopped_at,
    }
