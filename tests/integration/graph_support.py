"""Helpers for the dependency and workflow tests: submit over the API, run a
task as the worker does with its commit hooks (release, failure propagation)."""

from __future__ import annotations

import uuid
from typing import Any

from apps.runtime.execution import execute_task
from apps.tasks.models import Task

TASKS = "/api/v1/tasks"
WORKFLOWS = "/api/v1/workflows"


def node(name: str, prompt: str = "hello", depends_on: tuple[str, ...] | list[str] = (), **fields: Any) -> dict:
    return {"name": name, "model": "echo", "prompt": prompt, "depends_on": list(depends_on), **fields}


def submit_workflow(api, nodes: list[dict], capture) -> dict[str, str]:
    """POST the graph (its commit hooks run, as in production); node name → task id."""
    with capture(execute=True):
        created = api.post(WORKFLOWS, {"nodes": nodes})
    assert created.status == 201, created.body
    return created.body["tasks"]


def submit_task(api, capture, **fields: Any) -> dict:
    with capture(execute=True):
        created = api.post(TASKS, {"model": "echo", "prompt": "hello", **fields})
    assert created.status == 201, created.body
    return created.body


def run(task_id: str, capture) -> Task:
    """The worker's code path for one task, commit hooks included; the task after."""
    with capture(execute=True):
        execute_task(uuid.UUID(task_id))
    return Task.objects.get(pk=task_id)


def state(task_id: str) -> str:
    return Task.objects.values_list("state", flat=True).get(pk=task_id)


def assert_invalid(response, param: str | None, code: str) -> dict:
    assert response.status == 400, response.body
    error = response.body["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code), error
    return error


def ready() -> set[str]:
    """Tasks the dispatcher would hand to workers now: queued, not yet handed out."""
    ready = Task.objects.filter(state="queued", dispatched_at__isnull=True)
    return {str(pk) for pk in ready.values_list("pk", flat=True)}


def ledger(api) -> tuple[int, int, int]:
    """The tenant's budget as its usage API shows it: (budget, spent, reserved)."""
    usage = api.get("/api/v1/usage")
    assert usage.status == 200, usage.body
    return usage.body["budget_tokens"], usage.body["spent_tokens"], usage.body["reserved_tokens"]


def error_of(api, task_id: str) -> tuple[str, dict | None]:
    """A task's status and error as the tenant reads them (GET /api/v1/tasks/{id})."""
    task = api.get(f"{TASKS}/{task_id}")
    assert task.status == 200, task.body
    return task.body["status"], task.body["error"]
