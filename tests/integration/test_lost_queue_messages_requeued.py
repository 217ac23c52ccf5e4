"""Tasks handed to a queue whose messages are gone (Redis restarted or flushed)
are put back on it from the database, in the order they were handed out.

The suite's queue storage is the real one (Redis db of this run, or Huey's
SQLite file); flushing one model's queue is what a Redis flush does to it.
"""

from __future__ import annotations

import pytest

from apps.scheduler.dispatch import requeue_lost_messages
from apps.tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db


def _ids(queue) -> list[str]:
    return [message.args[0] for message in queue.huey.pending()]


@pytest.fixture
def dispatched(acme_api, dispatcher, model_queues, django_capture_on_commit_callbacks):
    """Three echo tasks handed to the echo queue, one per round (so their order is known)."""
    queue = model_queues("echo")
    ids = []
    for n in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            created = acme_api.post("/api/v1/tasks", {"model": "echo", "prompt": f"task {n}"})
        assert created.status == 201, created.body
        dispatcher.run_once()
        ids.append(created.body["id"])
    assert _ids(queue) == ids
    return queue, ids


def test_a_flushed_queue_gets_its_tasks_back_in_order(dispatched):
    queue, ids = dispatched
    queue.huey.flush()

    assert requeue_lost_messages() == 3

    assert _ids(queue) == ids
    assert requeue_lost_messages() == 0  # all there now: nothing is enqueued twice


def test_only_the_missing_ones_come_back(dispatched):
    queue, ids = dispatched
    taken = queue.huey.dequeue()  # a worker took the first, then claimed it
    assert taken is not None and taken.args[0] == ids[0]
    Task.objects.filter(pk=ids[0]).update(state=TaskState.RUNNING)
    queue.huey.flush()

    assert requeue_lost_messages() == 2

    assert _ids(queue) == ids[1:]
