"""A generation whose time slice ended goes to the back of its flow's line (turn_at):
its tenant's tasks of its class that waited are served before it resumes. A
preempted one keeps its place: it resumes first."""

from __future__ import annotations

import pytest

from apps.scheduler.dispatcher import Dispatcher
from apps.tasks.models import Task
from apps.tasks.suspension import SuspendReason
from tests.integration.preemption_support import claim, finish, handed_out, submit, suspend, worker

pytestmark = pytest.mark.django_db


def _serve_one(dispatcher: Dispatcher):
    """Hand out the one free slot's task and run it to its end; its id."""
    assert dispatcher.run_once() == 1
    [task_id] = handed_out()
    finish(claim(task_id), prompt_tokens=1, completion_tokens=1)
    return task_id


def test_a_task_whose_slice_ended_resumes_after_the_tasks_waiting_in_its_flow(acme_api):
    worker(slots=1)
    dispatcher = Dispatcher()
    first, second, third = (submit(acme_api, f"long {n}") for n in range(3))
    assert dispatcher.run_once() == 1
    suspend(claim(first), completion_tokens=16, reason=SuspendReason.TIME_SLICE)
    assert Task.objects.get(pk=first).turn_at is not None

    assert [_serve_one(dispatcher) for _ in range(3)] == [second, third, first]


def test_a_preempted_task_keeps_its_place(acme_api):
    worker(slots=1)
    dispatcher = Dispatcher()
    first, second, third = (submit(acme_api, f"long {n}") for n in range(3))
    assert dispatcher.run_once() == 1
    suspend(claim(first), completion_tokens=16, reason=SuspendReason.PREEMPTED)

    assert [_serve_one(dispatcher) for _ in range(3)] == [first, second, third]
