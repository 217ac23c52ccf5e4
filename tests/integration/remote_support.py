"""Helpers of the integration tests of remote (OpenAI-compatible) models."""

from __future__ import annotations

import uuid

from apps.runtime.execution import execute_task

TASKS = "/api/v1/tasks"


def run_task(api, body: dict) -> dict:
    """Submit a task as ``api``'s tenant, run it in this process (a worker's execute_task),
    and return the task as the tenant sees it."""
    created = api.post(TASKS, body)
    assert created.status == 201, created.body
    execute_task(uuid.UUID(created.body["id"]))
    shown = api.get(f"{TASKS}/{created.body['id']}")
    assert shown.status == 200, shown.body
    return shown.body
