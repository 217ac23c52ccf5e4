"""Fair share charges a suspended task about once in all: when it comes back ready,
its tenant's tag is corrected to the tokens of the segment that ended; when it is
dispatched again it is charged what is left of its reservation; its end corrects
the last segment. A retried attempt, which starts over, is charged nothing for
the segment it lost.

The tags are the policy's (in tokens ÷ weight × class weight); ``unit`` below is
that divisor, read from the first charge: the reservation it was."""

from __future__ import annotations

import uuid

import pytest

from apps.scheduler.dispatcher import Dispatcher
from apps.tasks.models import Task
from apps.tasks.services import release_for_retry
from apps.tenants.models import TaskCharge
from tests.integration.preemption_support import claim, finish, submit, suspend, worker

pytestmark = pytest.mark.django_db


class Charges:
    """One tenant's tag for one task's model and class, in tokens."""

    def __init__(self, dispatcher: Dispatcher, task_id: uuid.UUID) -> None:
        task = Task.objects.get(pk=task_id)
        self.dispatcher, self.task = dispatcher, task
        self.reserved = TaskCharge.objects.get(task_id=task_id).reserved_tokens
        self.unit: float | None = None

    def tokens(self) -> float:
        tag = self.dispatcher.tag(self.task.model_id, str(self.task.tenant_id), self.task.priority)
        if self.unit is None:  # the first reading: the reservation was charged
            self.unit = self.reserved / tag
        return tag * self.unit


def _preempt_for(dispatcher: Dispatcher, api, task_id: uuid.UUID, completion_tokens: int) -> uuid.UUID:
    """An interactive task arrives; the round asks the running ``task_id`` to suspend and
    hands the urgent task the slot being freed; its worker suspends it after
    ``completion_tokens`` in all; the next round sees it back."""
    urgent = submit(api, "urgent", priority="interactive")
    running = claim(task_id)
    assert dispatcher.run_once() == 1
    assert Task.objects.get(pk=task_id).suspend_requested
    assert Task.objects.get(pk=urgent).dispatched_at is not None
    suspend(running, completion_tokens)
    assert dispatcher.run_once() == 0
    return urgent


def test_a_task_suspended_twice_is_charged_its_tokens_once(acme_api, globex_api):
    worker(slots=1)
    dispatcher = Dispatcher()
    task_id = submit(acme_api, "long", max_tokens=1000)
    assert dispatcher.run_once() == 1
    charges = Charges(dispatcher, task_id)
    assert charges.tokens() == pytest.approx(charges.reserved)

    urgent = _preempt_for(dispatcher, globex_api, task_id, completion_tokens=400)
    assert charges.tokens() == pytest.approx(400)  # the segment's tokens, not the reservation
    finish(claim(urgent), prompt_tokens=1, completion_tokens=1)
    assert dispatcher.run_once() == 1  # it goes on: charged what is left of its reservation
    assert charges.tokens() == pytest.approx(400 + (charges.reserved - 400))

    urgent = _preempt_for(dispatcher, globex_api, task_id, completion_tokens=700)
    assert charges.tokens() == pytest.approx(700)
    finish(claim(urgent), prompt_tokens=1, completion_tokens=1)
    assert dispatcher.run_once() == 1
    assert charges.tokens() == pytest.approx(charges.reserved)

    finish(claim(task_id), prompt_tokens=3, completion_tokens=900)
    dispatcher.run_once()
    assert charges.tokens() == pytest.approx(3 + 900)


def test_a_retried_attempt_is_not_charged_for_the_segment_it_lost(acme_api):
    worker(slots=1)
    dispatcher = Dispatcher()
    task_id = submit(acme_api, "flaky", max_tokens=1000)
    assert dispatcher.run_once() == 1
    charges = Charges(dispatcher, task_id)
    assert charges.tokens() == pytest.approx(charges.reserved)

    assert release_for_retry(claim(task_id), "a transient error")
    assert dispatcher.run_once() == 1  # back ready (its charge undone) and handed out again
    assert charges.tokens() == pytest.approx(charges.reserved)

    finish(claim(task_id), prompt_tokens=3, completion_tokens=20)
    dispatcher.run_once()
    assert charges.tokens() == pytest.approx(3 + 20)
