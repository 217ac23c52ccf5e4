"""A worker whose task finished while the database was down keeps the result
and records it once the database answers again: the task is not run twice.

The database "goes down" for the writes of the task's end: each raises the
OperationalError a lost connection raises, a set number of times."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection

from apps.runtime import execution
from apps.runtime.execution import execute_task
from apps.runtime.leases import LeaseKeeper
from apps.tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db

PROMPT = "kept until it can be written"


class EndWritesFail:
    """Refuses the first ``times`` statements that write a task's success."""

    def __init__(self, times: int) -> None:
        self.left = times

    def __call__(self, execute, sql, params, many, context):
        if self.left and sql.lstrip().upper().startswith("UPDATE") and TaskState.SUCCEEDED in (params or ()):
            self.left -= 1
            raise OperationalError("server closed the connection unexpectedly (injected)")
        return execute(sql, params, many, context)


def test_the_result_is_recorded_once_the_database_is_back(acme_api, monkeypatch):
    created = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": PROMPT})
    assert created.status == 201, created.body
    monkeypatch.setattr(execution, "RECORD_RETRY_FIRST_SECONDS", 0.01)  # no need to wait in a test
    outage = EndWritesFail(times=3)

    with connection.execute_wrapper(outage):
        execute_task(created.body["id"], keeper=LeaseKeeper())

    assert outage.left == 0  # the database refused the end three times
    task = Task.objects.get(pk=created.body["id"])
    assert task.state == TaskState.SUCCEEDED
    assert task.attempt == 1
    assert acme_api.get(f"/api/v1/tasks/{task.pk}").body["output"] == PROMPT
