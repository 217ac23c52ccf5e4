"""Time slicing: after every ``time_slice_tokens`` chunks a generation looks for a
task of its class or above waiting for its model; if one waits, it suspends and
goes to the back of its line (turn_at), else it runs on. A lower class waiting
does not take its slot (preemption, not slicing, decides across classes).
"""

from __future__ import annotations

import uuid

import pytest

from apps.tasks import suspension
from apps.tasks.models import Task, TaskState
from tests.integration.suspension_support import SLOW_ECHO, WORDS, WorkerThread, slow_echo
from tests.metrics_support import delta, scrape

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SLICE = 3


@pytest.fixture
def sliced_model():
    model = slow_echo()
    model.time_slice_tokens = SLICE
    model.save(update_fields=["time_slice_tokens"])
    return model


def _submit(api, prompt: str = WORDS, priority: str = "normal") -> uuid.UUID:
    created = api.post("/api/v1/tasks", {"model": SLOW_ECHO, "prompt": prompt, "max_tokens": 100,
                                         "priority": priority})
    assert created.status == 201, created.body
    return uuid.UUID(created.body["id"])


def test_a_slice_ends_with_a_task_of_its_class_waiting_and_goes_to_the_back(acme_api, globex_api, keeper,
                                                                            sliced_model, staff_client):
    running = _submit(acme_api)
    waiting = _submit(globex_api, "the waiting one")  # queued, never handed out: it waits for the slot
    before = scrape(staff_client)

    WorkerThread(running, keeper).join()

    task = Task.objects.get(pk=running)
    assert task.state == TaskState.QUEUED and (task.slices, task.preemptions) == (1, 0)
    assert task.progress_tokens == SLICE
    assert task.turn_at is not None and task.turn_at > Task.objects.get(pk=waiting).queued_at
    assert suspension.read_progress(task).text == " ".join(WORDS.split()[:SLICE]) + " "
    suspensions = delta(before, scrape(staff_client), "llmagentos_task_suspensions_total", model=SLOW_ECHO,
                        reason="time_slice")
    assert suspensions == 1


def test_with_nobody_waiting_the_generation_runs_to_its_end(acme_api, keeper, sliced_model):
    running = _submit(acme_api, " ".join(WORDS.split()[:8]))

    WorkerThread(running, keeper).join()

    task = Task.objects.get(pk=running)
    assert task.state == TaskState.SUCCEEDED and task.slices == 0


def test_a_lower_class_waiting_does_not_take_the_slot(acme_api, globex_api, keeper, sliced_model):
    running = _submit(acme_api, " ".join(WORDS.split()[:8]), priority="normal")
    _submit(globex_api, "a batch task", priority="batch")

    WorkerThread(running, keeper).join()

    assert Task.objects.get(pk=running).state == TaskState.SUCCEEDED


def test_slicing_is_off_by_default(acme_api, globex_api, keeper, settings):
    settings.TIME_SLICE_TOKENS = 0
    slow_echo()
    running = _submit(acme_api, " ".join(WORDS.split()[:8]))
    _submit(globex_api, "waiting")

    WorkerThread(running, keeper).join()

    assert Task.objects.get(pk=running).state == TaskState.SUCCEEDED
