"""An interactive task that finds every slot of its model held by batch generations
has the one started last asked to suspend and is handed out in the same round (the
worker takes it once the slot is free); the batch task waits in the queue with its
progress."""

from __future__ import annotations

import logging

import pytest

from apps.scheduler.dispatcher import Dispatcher
from apps.tasks.models import Task, TaskState
from tests.integration.preemption_support import asked, claim, handed_out, submit, suspend, worker

pytestmark = pytest.mark.django_db


def test_the_batch_generation_started_last_gives_its_slot_to_the_interactive_task(acme_api, globex_api, caplog):
    worker(slots=4)
    dispatcher = Dispatcher()
    batch = [submit(acme_api, f"overnight {n}", priority="batch") for n in range(4)]
    assert dispatcher.run_once() == 4
    running = [claim(task_id, seconds_ago=60 - n) for n, task_id in enumerate(batch)]  # the last started last
    urgent = submit(globex_api, "a customer waits", priority="interactive")

    with caplog.at_level(logging.INFO, logger="apps.scheduler.preemption"):
        assert dispatcher.run_once() == 1  # no slot is free: the one being freed is handed to it
    assert asked() == {batch[3]}
    assert f"preempting task {batch[3]} (batch) for task {urgent} (interactive)" in caplog.text
    assert handed_out() == {urgent}

    # Until it has suspended, its slot counts as one about to free: nobody else is asked.
    assert dispatcher.run_once() == 0
    assert asked() == {batch[3]}

    suspend(running[3], completion_tokens=3)  # its worker stops it at a token boundary
    assert dispatcher.run_once() == 0  # its slot is the interactive task's already
    assert handed_out() == {urgent}
    suspended = Task.objects.get(pk=batch[3])
    assert (suspended.state, suspended.dispatched_at, suspended.preemptions) == (TaskState.QUEUED, None, 1)

    # The batch task now waits behind generations of its own class and tenant: it outranks none.
    assert dispatcher.run_once() == 0
    assert asked() == set()


def test_nothing_is_asked_when_the_waiting_task_outranks_no_running_one(acme_api, globex_api):
    worker(slots=2)
    dispatcher = Dispatcher()
    first = [submit(acme_api, f"chat {n}", priority="interactive") for n in range(2)]
    assert dispatcher.run_once() == 2
    for task_id in first:
        claim(task_id)
    submit(globex_api, "later", priority="batch")
    assert dispatcher.run_once() == 0
    assert asked() == set()


def test_preemption_switched_off_asks_nothing(acme_api, globex_api, settings):
    settings.PREEMPTION_ENABLED = False
    worker(slots=1)
    dispatcher = Dispatcher()
    [batch] = [submit(acme_api, "overnight", priority="batch")]
    assert dispatcher.run_once() == 1
    claim(batch)
    submit(globex_api, "a customer waits", priority="interactive")
    assert dispatcher.run_once() == 0
    assert asked() == set()
