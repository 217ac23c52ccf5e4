"""Unplaceable work: a submission to a model version no active worker can hold is refused
503 ``model_unplaceable`` every time — the first one included, and after a placement run
has forgotten the verdict — and tasks already queued for a version that becomes
unplaceable fail with that reason once it has been so for UNPLACEABLE_TIMEOUT_SECONDS,
unless a worker that can hold it appears first.

Workers register as run_worker does (register_worker, which runs the placement); the
timeout is driven by the job's ``now`` argument."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from apps.catalog import services as catalog
from apps.catalog.models import LLMModel, ModelVersion
from apps.scheduler import placer
from apps.scheduler.placement import GIB
from apps.tasks.models import Task, TaskState
from apps.workers import services
from apps.workers.models import Worker

pytestmark = pytest.mark.django_db

TIMEOUT = 300
SECOND = timedelta(seconds=1)


def _gpus(total_gib: float) -> dict:
    gpu = {"index": 0, "name": "H100", "memory_total": int(total_gib * GIB), "memory_free": int(total_gib * GIB),
           "utilization": 0}
    return {"gpus": [gpu], "cpu_count": 16, "ram_total": None, "ram_available": None}


def _register(name: str, gib: float) -> Worker:
    return services.register_worker(
        name=name, host=f"host-{name}", pid=os.getpid(), slots=2, device_info=_gpus(gib), model_names=None
    )


def _version(tmp_path: Path, label: str, gib: float, *, current: bool) -> ModelVersion:
    model = LLMModel.objects.get_or_create(name="llama", defaults={"adapter": "echo", "is_public": True})[0]
    (tmp_path / label).mkdir()
    return catalog.create_version(
        model, label, str(tmp_path / label), device="gpu", gpu_memory_bytes=int(gib * GIB), make_current=current
    )


def test_a_version_no_worker_can_hold_is_refused_from_the_first_task_on(tmp_path, acme_api):
    _version(tmp_path, "huge", 100, current=False)  # pinned only: no placement run has judged it
    _version(tmp_path, "v1", 30, current=True)
    _register("gpu-a", 80)

    for _ in range(3):
        refused = acme_api.post("/api/v1/tasks", {"model": "llama@huge", "prompt": "hi"})
        assert refused.status == 503, refused.body
        assert refused.body["error"]["code"] == "model_unplaceable"
        assert refused.body["error"]["param"] == "model"
        assert int(refused.headers["Retry-After"]) > 0
        placer.apply_placement()  # a periodic run: the version has no tasks, so it forgets the verdict

    assert not Task.objects.exists()
    assert acme_api.post("/api/v1/tasks", {"model": "llama@v1", "prompt": "hi"}).status == 201


def _stranded(tmp_path: Path, api, settings) -> tuple[ModelVersion, str]:
    """A task queued for llama@v1 (60 GiB), whose only big worker then stopped: the
    version is unplaceable (a 24 GiB worker is left) since the returned version's
    ``unplaceable_since``."""
    settings.UNPLACEABLE_TIMEOUT_SECONDS = TIMEOUT
    version = _version(tmp_path, "v1", 60, current=True)
    big = _register("gpu-big", 80)
    _register("gpu-small", 24)
    created = api.post("/api/v1/tasks", {"model": "llama", "prompt": "stranded"})
    assert created.status == 201, created.body

    services.mark_stopped(big.id)  # the placement runs again: nowhere to go

    version.refresh_from_db()
    assert version.placement_error and version.unplaceable_since is not None
    return version, created.body["id"]


def test_queued_tasks_fail_once_their_version_has_been_unplaceable_for_the_timeout(tmp_path, acme_api, settings):
    version, task_id = _stranded(tmp_path, acme_api, settings)
    since = version.unplaceable_since

    assert placer.fail_unplaceable(now=since + timedelta(seconds=TIMEOUT) - SECOND) == 0
    assert Task.objects.get(pk=task_id).state == TaskState.QUEUED
    placer.apply_placement()  # later runs keep the time it became unplaceable
    version.refresh_from_db()
    assert version.unplaceable_since == since

    assert placer.fail_unplaceable(now=since + timedelta(seconds=TIMEOUT) + SECOND) == 1

    shown = acme_api.get(f"/api/v1/tasks/{task_id}").body
    assert shown["status"] == "failed"
    assert shown["error"]["code"] == "model_unplaceable"
    assert shown["error"]["message"].startswith("no worker can hold the model version: needs 60.0 GiB")


def test_a_worker_that_can_hold_it_appearing_in_time_saves_them(tmp_path, acme_api, settings):
    version, task_id = _stranded(tmp_path, acme_api, settings)

    _register("gpu-new", 80)

    version.refresh_from_db()
    assert (version.placement_error, version.unplaceable_since) == ("", None)
    assert placer.fail_unplaceable(now=version.placement_checked_at + timedelta(days=1)) == 0
    assert Task.objects.get(pk=task_id).state == TaskState.QUEUED
