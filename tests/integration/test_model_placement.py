"""Placement on the fleet: live versions go onto the managed workers' GPUs by their free
memory, workers serve what is placed on them, and a version that fits nowhere is
reported to operators and refused to tenants (503) instead of waiting forever."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apps.catalog import services as catalog
from apps.catalog.models import LLMModel, ModelVersion
from apps.scheduler import placer
from apps.scheduler.placement import GIB
from apps.tasks.models import Task
from apps.workers import services
from apps.workers.models import VersionPlacement, Worker

pytestmark = pytest.mark.django_db


def devices(*gpus: tuple[float, float]) -> dict:
    """device_info as a worker reports it: GPUs as (total GiB, free GiB)."""
    return {
        "gpus": [
            {"index": i, "name": "H100", "memory_total": int(total * GIB), "memory_free": int(free * GIB),
             "utilization": 0}
            for i, (total, free) in enumerate(gpus)
        ],
        "cpu_count": 16,
        "ram_total": None,
        "ram_available": None,
    }


def register(name: str, info: dict, models: list[str] | None = None) -> Worker:
    return services.register_worker(
        name=name, host=f"host-{name}", pid=os.getpid(), slots=2, device_info=info, model_names=models
    )


def beat(worker: Worker, info: dict) -> tuple[str, ...]:
    return services.heartbeat(worker.id, in_flight=0, idle=False, device_info=info).model_names


def gpu_model(tmp_path: Path, name: str, gib: float, *, current: bool = True, label: str = "v1") -> ModelVersion:
    model = LLMModel.objects.get_or_create(name=name, defaults={"adapter": "echo", "is_public": True})[0]
    (tmp_path / f"{name}-{label}").mkdir()
    return catalog.create_version(
        model, label, str(tmp_path / f"{name}-{label}"), device="gpu", gpu_memory_bytes=int(gib * GIB),
        make_current=current,
    )


def placements() -> set[tuple[str, str, int | None]]:
    return {
        (row.version.spec, row.worker.name, row.gpu_index)
        for row in VersionPlacement.objects.select_related("version__model", "worker")
    }


def test_versions_go_where_their_gpu_memory_fits_and_workers_serve_them(tmp_path):
    gpu_model(tmp_path, "llama", 60)
    gpu_model(tmp_path, "small", 10)
    small_gpu, big_gpu = devices((24, 24)), devices((80, 80))
    cpu_only = register("cpu-only", devices())
    a = register("gpu-a", small_gpu)
    b = register("gpu-b", big_gpu)

    placer.apply_placement()

    # 60 GiB fits only on b; 10 GiB goes to the first GPU with room (a). No
    # replicas with empty queues: those come with load (test_replica_scaling.py).
    assert placements() == {("llama@v1", "gpu-b", 0), ("small@v1", "gpu-a", 0)}
    assert beat(cpu_only, devices()) == ("echo",)
    assert beat(a, small_gpu) == ("echo", "small@v1")
    assert beat(b, big_gpu) == ("echo", "llama@v1")
    row = VersionPlacement.objects.get(worker=b, version__model__name="llama")
    assert row.gpu_memory_bytes == 60 * GIB
    assert not ModelVersion.objects.exclude(placement_error="").exists()
    # The model-level placements follow, so "workers taking this model's tasks" is right.
    assert set(services.workers_for_model(LLMModel.objects.get(name="llama")).values_list("name", flat=True)) == {
        "gpu-b"
    }


def test_a_loaded_model_keeps_its_gpu_although_the_gpu_now_reports_it_as_used(tmp_path):
    gpu_model(tmp_path, "llama", 60)
    worker = register("gpu-b", devices((80, 80)))
    assert placements() == {("llama@v1", "gpu-b", 0)}

    # The worker loaded it: NVML now says 20 GiB free. What the placement reserved counts back.
    beat(worker, devices((80, 20)))
    placer.apply_placement()

    assert placements() == {("llama@v1", "gpu-b", 0)}
    assert ModelVersion.objects.get().placement_error == ""


def test_a_version_that_fits_nowhere_is_reported_and_refused_to_tenants(tmp_path, acme_api):
    huge = gpu_model(tmp_path, "huge", 100)
    register("gpu-a", devices((24, 24)))
    register("gpu-b", devices((80, 80)))

    huge.refresh_from_db()
    assert huge.placement_error.startswith("needs 100.0 GiB (107374182400 bytes) of GPU memory")
    assert "the largest free GPU has 80.0 GiB" in huge.placement_error
    assert huge.placement_checked_at is not None

    refused = acme_api.post("/api/v1/tasks", {"model": "huge", "prompt": "hi"})
    assert refused.status == 503
    assert refused.body["error"]["code"] == "model_unplaceable"
    assert refused.body["error"]["param"] == "model"
    assert "GiB" not in refused.body["error"]["message"]  # the fleet's sizes are for operators
    assert int(refused.headers["Retry-After"]) > 0
    assert not Task.objects.exists()

    # A worker big enough joins: registering replans, and the version is accepted again.
    register("gpu-c", devices((141, 141)))
    huge.refresh_from_db()
    assert huge.placement_error == ""
    assert ("huge@v1", "gpu-c", 0) in placements()
    assert acme_api.post("/api/v1/tasks", {"model": "huge", "prompt": "hi"}).status == 201


def test_a_gpu_version_with_only_cpu_workers_is_reported(tmp_path):
    version = gpu_model(tmp_path, "llama", 1)
    register("cpu-only", devices())

    version.refresh_from_db()
    assert version.placement_error == "needs a GPU but no active worker has one"


def test_a_cpu_version_runs_on_every_managed_worker(tmp_path):
    model = LLMModel.objects.create(name="roll", adapter="echo")
    (tmp_path / "v1").mkdir()
    catalog.create_version(model, "v1", str(tmp_path / "v1"), make_current=True)  # the echo adapter says cpu
    register("cpu-only", devices())
    register("gpu-a", devices((24, 24)))

    assert placements() == {("roll@v1", "cpu-only", None), ("roll@v1", "gpu-a", None)}


def test_without_any_active_worker_nothing_is_reported_tasks_wait(tmp_path, acme_api):
    gpu_model(tmp_path, "llama", 60)

    placer.apply_placement()

    assert not ModelVersion.objects.exclude(placement_error="").exists()
    assert acme_api.post("/api/v1/tasks", {"model": "llama", "prompt": "hi"}).status == 201


def test_a_worker_started_with_models_hosts_them_outside_placement(tmp_path):
    huge = gpu_model(tmp_path, "huge", 100)
    pinned = register("operator-pinned", devices((24, 24)), models=["huge"])
    register("gpu-a", devices((24, 24)))

    huge.refresh_from_db()
    assert huge.placement_error == ""  # someone serves it: the operator chose to
    assert placements() == set()  # placement never writes for a --models worker
    assert beat(pinned, devices((24, 24))) == ("huge@v1",)


def test_a_drained_worker_hands_its_versions_to_another(tmp_path):
    gpu_model(tmp_path, "llama", 60)
    first = register("gpu-a", devices((80, 80)))
    register("gpu-b", devices((80, 80)))
    assert ("llama@v1", "gpu-a", 0) in placements()

    services.drain(first)

    assert placements() == {("llama@v1", "gpu-b", 0)}
    assert beat(first, devices((80, 80))) == ("echo",)


def test_a_task_pinned_to_an_idle_version_gets_it_placed_at_once(
    tmp_path, acme_api, django_capture_on_commit_callbacks
):
    gpu_model(tmp_path, "llama", 30, label="v1")
    gpu_model(tmp_path, "llama", 30, label="v2")  # now current: v1 is idle and placed nowhere
    register("gpu-a", devices((80, 80)))
    assert placements() == {("llama@v2", "gpu-a", 0)}

    with django_capture_on_commit_callbacks(execute=True):
        created = acme_api.post("/api/v1/tasks", {"model": "llama@v1", "prompt": "hi"})

    assert created.status == 201, created.body
    assert placements() == {("llama@v1", "gpu-a", 0), ("llama@v2", "gpu-a", 0)}


def test_operators_see_versions_placements_and_problems(tmp_path, staff_client, acme_api):
    gpu_model(tmp_path, "llama", 60)
    huge = gpu_model(tmp_path, "huge", 100)
    register("gpu-b", devices((80, 80)))

    listed = staff_client.get("/api/v1/ops/models")

    assert listed.status_code == 200
    models = {m["name"]: m for m in listed.json()["data"]}
    llama = models["llama"]
    assert llama["current_version"] == "v1"
    assert llama["workers"] == ["gpu-b"]
    [version] = llama["versions"]
    assert version["model"] == "llama@v1" and version["current"] is True
    assert version["placements"] == [{"worker": "gpu-b", "gpu": 0, "gpu_memory_bytes": 60 * GIB}]
    assert (version["replicas"], version["desired_replicas"], version["replica_change"]) == (1, 1, None)
    assert version["placement_error"] is None
    huge.refresh_from_db()
    assert models["huge"]["versions"][0]["placement_error"] == huge.placement_error != ""
    assert models["huge"]["placement_error"].startswith("v1: needs 100.0 GiB")
    assert models["echo"]["versions"] == [] and models["echo"]["current_version"] is None

    # Tenants never reach it.
    assert acme_api.get("/api/v1/ops/models").status == 403
