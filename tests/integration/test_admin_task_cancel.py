"""Cancelling tasks from the admin's task list, as a tenant's cancel does: a
queued task ends cancelled at once, a running one is asked to stop (its
worker ends it cancelled), a finished one is left as it was."""

from __future__ import annotations

import pytest

from apps.runtime.execution import execute_task
from apps.tasks import services
from apps.tasks.models import Task, TaskState
from tests.audit_support import signed_in_operator

pytestmark = pytest.mark.django_db

TASKS = "/admin/tasks/task/"


def _submit(api, prompt: str) -> str:
    created = api.post("/api/v1/tasks", {"model": "echo", "prompt": prompt})
    assert created.status == 201, created.body
    return created.body["id"]


def test_an_operator_cancels_queued_and_running_tasks(acme_api, globex_api):
    queued, running, finished = _submit(acme_api, "q"), _submit(globex_api, "r"), _submit(acme_api, "f")
    execute_task(finished)
    assert services.claim_task(running, "worker-1") is not None
    client, _ = signed_in_operator()

    response = client.post(
        TASKS, {"action": "cancel_tasks", "_selected_action": [queued, running, finished]}, follow=True
    )

    shown = [str(message) for message in response.context["messages"]]
    assert shown == [f"Cancelled: {queued}.", f"Asked to stop: {running}.", f"Already finished: {finished}."]
    states = dict(Task.objects.values_list("pk", "state"))
    assert {str(k): v for k, v in states.items()} == {
        queued: TaskState.CANCELLED, running: TaskState.RUNNING, finished: TaskState.SUCCEEDED
    }
    assert Task.objects.get(pk=running).cancel_requested
    # The tenant reads its task as cancelled, as if it had cancelled it itself.
    assert acme_api.get(f"/api/v1/tasks/{queued}").body["status"] == "cancelled"
