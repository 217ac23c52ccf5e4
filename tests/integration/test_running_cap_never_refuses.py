"""A tenant's running-task cap never gives an error: a task submitted while the
tenant is at its cap is admitted (201, queued) and waits its turn (Contracts).

The tenant really is at its cap when it submits: its one allowed task has been
handed out and a worker is running it. (Submitting several tasks while none
runs yet would not notice admission counting running tasks.)
"""

from __future__ import annotations

import pytest

from apps.tasks import services
from apps.tasks.models import Task, TaskState
from apps.tenants.services import change_tenant_plan

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/tasks"
WORKFLOWS = "/api/v1/workflows"


@pytest.fixture
def acme_at_its_running_cap(acme, acme_api, dispatcher) -> Task:
    """acme may run one task at a time, and one is running now; that task."""
    change_tenant_plan(acme, {"max_running": 1})
    created = acme_api.post(TASKS, {"model": "echo", "prompt": "already running"})
    assert created.status == 201, created.body
    assert dispatcher.run_once() == 1
    running = services.claim_task(created.body["id"], "test-worker")
    assert running is not None and running.state == TaskState.RUNNING
    return running


def test_tasks_submitted_at_the_cap_are_admitted_and_wait_their_turn(acme_api, acme_at_its_running_cap, dispatcher):
    responses = [acme_api.post(TASKS, {"model": "echo", "prompt": f"over the cap {n}"}) for n in range(3)]

    assert [response.status for response in responses] == [201, 201, 201], [r.body for r in responses]
    waiting = [response.body["id"] for response in responses]
    assert set(Task.objects.filter(pk__in=waiting).values_list("state", flat=True)) == {TaskState.QUEUED}
    assert dispatcher.run_once() == 0  # the worker has free slots; the cap holds them back

    usage = {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    finished = services.finish_task(acme_at_its_running_cap, state=TaskState.SUCCEEDED, output="done", usage=usage)
    assert finished
    assert dispatcher.run_once() == 1  # one of them gets its turn
    assert Task.objects.filter(pk__in=waiting, dispatched_at__isnull=False).count() == 1


def test_a_workflow_submitted_at_the_cap_is_admitted(acme_api, acme_at_its_running_cap):
    nodes = [
        {"name": "draft", "model": "echo", "prompt": "draft it"},
        {"name": "review", "model": "echo", "prompt": "review {{draft.output}}", "depends_on": ["draft"]},
    ]

    created = acme_api.post(WORKFLOWS, {"nodes": nodes})

    assert created.status == 201, created.body
    states = Task.objects.filter(pk__in=created.body["tasks"].values()).values_list("state", flat=True)
    assert sorted(states) == [TaskState.QUEUED, TaskState.WAITING]
