"""The thrash guards: a generation is preempted only once it has run
PREEMPT_MIN_RUN_SECONDS in its current segment, and at most PREEMPT_MAX_PER_TASK
times; one that may not be is passed over for the next lowest-ranked."""

from __future__ import annotations

import pytest

from apps.scheduler.dispatcher import Dispatcher
from tests.integration.preemption_support import asked, claim, finish, submit, suspend, worker

pytestmark = pytest.mark.django_db


def test_a_generation_younger_than_the_minimum_run_is_passed_over(acme_api, globex_api, settings):
    settings.PREEMPT_MIN_RUN_SECONDS = 30
    worker(slots=2)
    dispatcher = Dispatcher()
    older, younger = submit(acme_api, "older", priority="batch"), submit(acme_api, "younger", priority="batch")
    assert dispatcher.run_once() == 2
    claim(older, seconds_ago=60)
    claim(younger, seconds_ago=5)  # started last, but only 5 s ago
    submit(globex_api, "urgent", priority="interactive")

    assert dispatcher.run_once() == 1  # the slot being freed is handed out at once
    assert asked() == {older}


def test_nobody_is_asked_while_every_generation_is_too_young(acme_api, globex_api, settings):
    settings.PREEMPT_MIN_RUN_SECONDS = 30
    worker(slots=1)
    dispatcher = Dispatcher()
    batch = submit(acme_api, "young", priority="batch")
    assert dispatcher.run_once() == 1
    claim(batch, seconds_ago=5)
    submit(globex_api, "urgent", priority="interactive")

    assert dispatcher.run_once() == 0
    assert asked() == set()


def test_a_generation_preempted_as_often_as_the_cap_allows_runs_to_its_end(acme_api, globex_api, settings):
    settings.PREEMPT_MAX_PER_TASK = 1
    worker(slots=1)
    dispatcher = Dispatcher()
    batch = submit(acme_api, "long", priority="batch")
    assert dispatcher.run_once() == 1
    running = claim(batch)
    first = submit(globex_api, "urgent 1", priority="interactive")
    assert dispatcher.run_once() == 1  # the interactive task is handed the slot being freed
    assert asked() == {batch}
    suspend(running, completion_tokens=4)

    assert dispatcher.run_once() == 0  # the slot is the interactive task's
    finish(claim(first), prompt_tokens=2, completion_tokens=2)
    assert dispatcher.run_once() == 1  # the batch task goes on
    resumed = claim(batch)
    assert resumed.preemptions == 1
    submit(globex_api, "urgent 2", priority="interactive")

    assert dispatcher.run_once() == 0
    assert asked() == set()  # preempted once already: it keeps its slot
