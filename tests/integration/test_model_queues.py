"""The dispatcher puts a task's id on its own model's queue, and nowhere else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.catalog.models import LLMModel
from apps.scheduler.dispatch import redispatch_stale
from apps.scheduler.queues import queue_name
from apps.tasks import payloads
from apps.tasks.models import Task, TaskState

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_models(db) -> tuple[str, str]:
    # Names that differ only in punctuation: they must still get two queues.
    for name in ("tiny-1", "tiny1"):
        LLMModel.objects.create(name=name, adapter="echo", is_public=True)
    return "tiny-1", "tiny1"


@pytest.fixture
def submit(acme_api, django_capture_on_commit_callbacks, dispatcher):
    """Submit as acme over the API, then let the dispatcher hand it out."""

    def submit(model: str, prompt: str = "to the right queue", **extra) -> Task:
        with django_capture_on_commit_callbacks(execute=True):
            created = acme_api.post("/api/v1/tasks", {"model": model, "prompt": prompt, **extra})
        assert created.status == 201, created.body
        dispatcher.run_once()
        return Task.objects.get(pk=created.body["id"])

    return submit


def _ids(queue) -> list[str]:
    return [message.args[0] for message in queue.huey.pending()]


def test_a_task_goes_onto_its_models_queue_only(two_models, submit, model_queues):  # models before the worker
    mine, other = (model_queues(name) for name in two_models)
    settings.HUEY.flush()

    task = submit("tiny-1")

    assert _ids(mine) == [str(task.pk)]
    assert _ids(other) == []
    assert settings.HUEY.pending_count() == 0  # the global queue keeps only the periodic jobs
    assert mine.huey.name == queue_name("tiny-1") == f"{settings.HUEY_NAME}.model.tiny-1"
    task.refresh_from_db()
    assert task.dispatched_at is not None


def test_a_re_dispatch_goes_onto_the_models_queue_too(two_models, submit, model_queues, dispatcher):
    mine, other = (model_queues(name) for name in two_models)
    task = submit("tiny1")
    mine.huey.flush()
    other.huey.flush()
    Task.objects.filter(pk=task.pk).update(
        queued_at=timezone.now() - timedelta(minutes=1), dispatched_at=timezone.now() - timedelta(days=1)
    )

    assert redispatch_stale() == 1
    dispatcher.run_once()

    assert _ids(other) == [str(task.pk)]
    assert _ids(mine) == []


def test_higher_priority_classes_come_off_a_models_queue_first(submit, model_queues):
    queue = model_queues("echo")
    batch = submit("echo", priority="batch")
    normal = submit("echo", priority="normal")
    interactive = submit("echo", priority="interactive")

    taken = [queue.huey.dequeue().args[0] for _ in range(3)]

    assert taken == [str(interactive.pk), str(normal.pk), str(batch.pk)]


# Committed for real: the job closes its database connections after each run, as on a worker.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_message_from_a_models_queue_runs_the_task(submit, model_queues):
    queue = model_queues("echo")
    task = submit("echo", "run by the job the queue registered")

    queue.huey.execute(queue.huey.dequeue())

    task.refresh_from_db()
    assert task.state == TaskState.SUCCEEDED
    assert payloads.read_output(task) == "run by the job the queue registered"
