"""A poison task — one that fails on every attempt, or kills its worker on every
attempt — ends ``failed`` after TASK_MAX_ATTEMPTS with the reason (the tenant sees it on
GET /api/v1/tasks/{id}; operators find it with the admin's "dead letters" filter), and
the rest of the queue runs to success meanwhile.

The attempts run through the worker's own code path (execute_task); a worker that
dies is a worker process that restarts under its name (register_worker). Only the
poison model's adapter is a stand-in (the outside world failing)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client

from apps.catalog.adapters import AdapterError, GenerationRequest, ModelAdapter, TextChunk, Usage
from apps.catalog.models import LLMModel
from apps.runtime import execution
from apps.runtime.execution import execute_task
from apps.tasks import services
from apps.tasks.models import Task, TaskState
from apps.workers import inventory
from apps.workers import services as worker_services
from tests.ops_support import make_operator

pytestmark = pytest.mark.django_db

POISON_ERROR = "the engine ran out of memory on this input"


class PoisonedEngine(ModelAdapter):
    """A model that fails on every request, after a word (a transient-looking error)."""

    name = "poisoned"

    def __init__(self) -> None:
        super().__init__({}, {})

    def stream(self, request: GenerationRequest) -> Iterator[TextChunk | Usage]:
        yield TextChunk("half ")
        raise AdapterError(POISON_ERROR)


@pytest.fixture
def poison_model(db, monkeypatch) -> str:
    LLMModel.objects.create(name="poisoned", adapter="echo", is_public=True)
    real = execution.adapter_for
    engine = PoisonedEngine()
    monkeypatch.setattr(
        execution, "adapter_for",
        lambda model, version=None: engine if model.name == "poisoned" else real(model, version),
    )
    return "poisoned"


def _submit(api, model: str, prompt: str) -> uuid.UUID:
    created = api.post("/api/v1/tasks", {"model": model, "prompt": prompt})
    assert created.status == 201, created.body
    return uuid.UUID(created.body["id"])


def _run_the_queue() -> int:
    """Run every queued task, oldest first, until none is left (a worker draining the
    queue); returns how many attempts ran."""
    attempts = 0
    queue = Task.objects.filter(state=TaskState.QUEUED).order_by("created_at")
    while queued := list(queue.values_list("pk", flat=True)):
        for task_id in queued:
            execute_task(task_id)
            attempts += 1
        assert attempts <= 100, "the queue never empties"
    return attempts


@pytest.fixture
def task_viewer(db) -> Client:
    """An operator who may look at tasks in the admin."""
    client = Client()
    client.force_login(make_operator("task-viewer", ["tasks.view_task"]))
    return client


def _dead_letters(client) -> str:
    page = client.get("/admin/tasks/task/?dead_letter=yes")
    assert page.status_code == 200
    return page.content.decode()


def test_a_task_failing_on_every_attempt_ends_failed_and_the_others_succeed(acme_api, poison_model, task_viewer):
    poison = _submit(acme_api, poison_model, "poison")
    healthy = [_submit(acme_api, "echo", f"healthy task {i}") for i in range(5)]

    _run_the_queue()

    shown = acme_api.get(f"/api/v1/tasks/{poison}").body
    limit = settings.TASK_MAX_ATTEMPTS
    assert (shown["status"], shown["attempt"]) == ("failed", limit)
    assert shown["error"] == {
        "code": "retries_exhausted",
        "message": f"attempt {limit} of {limit} failed, the last allowed: {POISON_ERROR}",
    }
    assert [acme_api.get(f"/api/v1/tasks/{task_id}").body["status"] for task_id in healthy] == ["succeeded"] * 5
    listed = _dead_letters(task_viewer)
    assert str(poison) in listed
    assert not any(str(task_id) in listed for task_id in healthy)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _start_worker(pid: int) -> None:
    worker_services.register_worker(
        name="w1", host="gpu-host-1", pid=pid, slots=2, device_info=inventory.device_info(), model_names=None
    )


def test_a_task_killing_its_worker_on_every_attempt_ends_failed(acme_api, task_viewer):
    killer = _submit(acme_api, "echo", "kills the worker")
    healthy = _submit(acme_api, "echo", "healthy")
    plain_failure = _submit(acme_api, "echo", "refused by the model")
    _start_worker(_dead_pid())
    for _ in range(settings.TASK_MAX_ATTEMPTS):
        assert services.claim_task(killer, "w1") is not None  # the worker takes it, and dies of it
        _start_worker(_dead_pid())  # restarted by its supervisor
    failed = services.claim_task(plain_failure, "w1")
    services.finish_task(failed, state=TaskState.FAILED, output="", usage=None, error_code="generation_failed",
                         error_message="refused by the model")

    _run_the_queue()

    shown = acme_api.get(f"/api/v1/tasks/{killer}").body
    limit = settings.TASK_MAX_ATTEMPTS
    assert (shown["status"], shown["attempt"]) == ("failed", limit)
    assert shown["error"] == {
        "code": "worker_lost", "message": f"attempt {limit} of {limit} failed, the last allowed: the worker restarted",
    }
    assert acme_api.get(f"/api/v1/tasks/{healthy}").body["status"] == "succeeded"
    listed = _dead_letters(task_viewer)
    assert str(killer) in listed
    assert str(plain_failure) not in listed and str(healthy) not in listed
