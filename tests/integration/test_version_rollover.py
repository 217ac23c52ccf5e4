"""Moving the alias rolls a worker over without failing a task: the old version
keeps running its tasks, then leaves the worker's queues and is unloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apps.catalog import services as catalog
from apps.catalog.models import LLMModel
from apps.runtime import adapters as loaded_adapters
from apps.runtime.execution import execute_task
from apps.runtime.runner import WorkerOptions, WorkerRunner
from apps.scheduler.dispatch import hand_to_workers
from apps.tasks import payloads
from apps.tasks.models import Task, TaskState
from apps.workers import services as worker_services

pytestmark = pytest.mark.django_db

CPU_ONLY = {"gpus": [], "cpu_count": 2, "ram_total": None, "ram_available": None}


@pytest.fixture(autouse=True)
def empty_adapter_cache():
    """This process plays the worker: its adapter cache starts and ends empty."""
    loaded_adapters.retire_adapters(keep=())
    yield
    loaded_adapters.retire_adapters(keep=())


def artifact(tmp_path: Path, name: str) -> str:
    (tmp_path / name).mkdir()
    (tmp_path / name / "weights.bin").write_bytes(name.encode())
    return str(tmp_path / name)


def beat(runner: WorkerRunner, worker) -> tuple[str, ...]:
    """One heartbeat, applied by the worker's runner (its queues; unloading what is no
    longer placed). The runner's threads are not started: this process plays them."""
    reply = worker_services.heartbeat(worker.id, in_flight=0, idle=False, device_info=CPU_ONLY)
    runner._apply(reply)
    assert tuple(queue.model_name for queue in runner._queues) == reply.model_names
    return reply.model_names


def run(task_id) -> Task:
    execute_task(task_id)
    return Task.objects.get(pk=task_id)


def test_old_tasks_finish_on_the_old_version_new_ones_run_on_the_new(
    acme_api, tmp_path, model_queues, django_capture_on_commit_callbacks
):
    model = LLMModel.objects.create(name="roll", adapter="echo", is_public=True)
    v1 = catalog.create_version(model, "v1", artifact(tmp_path, "v1"), make_current=True)
    v2 = catalog.create_version(model, "v2", artifact(tmp_path, "v2"))
    worker = worker_services.register_worker(
        name="roller", host="h", pid=os.getpid(), slots=4, device_info=CPU_ONLY, model_names=None
    )
    runner = WorkerRunner(WorkerOptions(name="roller", slots=4))
    queues = {spec: model_queues(spec) for spec in ("roll@v1", "roll@v2")}
    old = [acme_api.post("/api/v1/tasks", {"model": "roll", "prompt": f"old {i}"}).body["id"] for i in range(3)]
    assert beat(runner, worker) == ("echo", "roll@v1")
    assert loaded_adapters.loaded_specs() == []  # loading is lazy: at the first task

    with django_capture_on_commit_callbacks(execute=True):  # the commit replans (apps.catalog.services.catalog_changed)
        catalog.make_version_current(v2)
    new = [acme_api.post("/api/v1/tasks", {"model": "roll", "prompt": f"new {i}"}).body["id"] for i in range(2)]
    for task_id in old + new:
        assert hand_to_workers(task_id)
    assert len(queues["roll@v1"].huey) == 3 and len(queues["roll@v2"].huey) == 2
    assert beat(runner, worker) == ("echo", "roll@v1", "roll@v2")

    # A new task runs on v2 (and loads only v2); an old one, after the move, still on v1.
    assert run(new[0]).state == TaskState.SUCCEEDED
    assert loaded_adapters.loaded_specs() == ["roll@v2"]
    assert run(old[0]).state == TaskState.SUCCEEDED
    assert loaded_adapters.loaded_specs() == ["roll@v1", "roll@v2"]

    # Two old tasks are still queued: the worker keeps serving v1 and keeps it loaded.
    assert beat(runner, worker) == ("echo", "roll@v1", "roll@v2")
    assert loaded_adapters.loaded_specs() == ["roll@v1", "roll@v2"]

    for task_id in old[1:] + new[1:]:
        task = run(task_id)
        assert task.state == TaskState.SUCCEEDED, task.error_message

    assert {str(t.pk): t.model_version.version for t in Task.objects.select_related("model_version")} == {
        **{task_id: "v1" for task_id in old},
        **{task_id: "v2" for task_id in new},
    }
    assert [payloads.read_output(Task.objects.get(pk=i)) for i in new] == ["new 0", "new 1"]
    assert not Task.objects.exclude(state=TaskState.SUCCEEDED).exists()  # no task failed

    # v1 has nothing left to do: the next heartbeat drops its queue and unloads it.
    assert beat(runner, worker) == ("echo", "roll@v2")
    assert loaded_adapters.loaded_specs() == ["roll@v2"]
    v1.refresh_from_db()
    assert v1.placement_error == ""


def test_a_version_still_streaming_is_unloaded_only_after_its_stream_ends(tiny_model_path):
    # The transformers adapter reports health() False once unloaded.
    model = LLMModel.objects.create(name="tiny-roll", adapter="transformers")
    v1 = catalog.create_version(model, "v1", tiny_model_path, device="cpu", make_current=True)
    streaming = loaded_adapters.adapter_for(model, v1)  # a stream holds it
    assert streaming.health()

    assert loaded_adapters.retire_adapters(keep=()) == ["tiny-roll@v1"]
    assert loaded_adapters.loaded_specs() == []
    assert streaming.health()  # still serving the stream that holds it

    # A task for v1 arriving meanwhile loads a fresh instance, not the retiring one.
    again = loaded_adapters.adapter_for(model, v1)
    assert again is not streaming and again.health()
    loaded_adapters.release_adapter(again)
    assert again.health()  # cached and not retired: released, still loaded

    loaded_adapters.release_adapter(streaming)  # the stream ends
    assert not streaming.health()
    assert loaded_adapters.loaded_specs() == ["tiny-roll@v1"]
