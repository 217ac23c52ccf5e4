"""The X-Request-ID of the request that submitted a task reaches the scheduler's and
the worker's lines about that task, beside the task's id (Task.request_id)."""

from __future__ import annotations

import uuid

import pytest

from apps.runtime.execution import execute_task
from apps.tasks.models import Task
from tests.integration.log_support import captured_log

pytestmark = pytest.mark.django_db


def test_the_dispatch_and_the_run_of_a_task_log_its_request_id(acme_api, dispatcher):
    created = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "hi"}, **{"X-Request-ID": "req-follow-1"})
    assert created.status == 201, created.body
    task_id = created.body["id"]
    assert Task.objects.get(pk=task_id).request_id == "req-follow-1"

    with captured_log("json") as log:
        assert dispatcher.run_once() == 1
        execute_task(uuid.UUID(task_id))

    about_the_task = [record for record in log.records() if record.get("task_id") == task_id]
    by_logger = {record["logger"]: record for record in about_the_task}
    # The scheduler's hand-off, the worker's start, the recorded end.
    assert {"apps.scheduler.dispatcher", "apps.runtime.execution", "apps.tasks.services"} <= set(by_logger), (
        log.text()
    )
    assert {record.get("request_id") for record in about_the_task} == {"req-follow-1"}, about_the_task
    assert "succeeded" in by_logger["apps.tasks.services"]["message"]


def test_a_task_submitted_without_a_request_id_gets_the_minted_one(acme_api):
    created = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": "hi"})
    assert created.status == 201, created.body

    assert Task.objects.get(pk=created.body["id"]).request_id == created.headers["X-Request-ID"]
