"""A task whose every attempt fails, or kills the worker running it, ends
failed after the attempt limit, with the reason the tenant can read, while the
tasks beside it succeed."""

from __future__ import annotations

import pytest

from tests.chaos.harness import CRASH_MODEL, POISON_MODEL, Babysitter
from tests.chaos.poison_plugin import FAILURE

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

MAX_ATTEMPTS = 3


def test_a_poison_task_fails_after_the_limit_while_the_rest_run(platform):
    platform.env["TASK_MAX_ATTEMPTS"] = str(MAX_ATTEMPTS)
    platform.start_all()
    poison = platform.submit("this input poisons every attempt", model=POISON_MODEL)
    prompts = platform.submit_many("healthy", 50)
    platform.wait_all_finished([poison], timeout=300)

    ended = platform.client.get(f"/api/v1/tasks/{poison}").json()
    assert ended["status"] == "failed", ended
    assert FAILURE in str(ended["error"]), ended
    assert platform.tasks([poison])[poison]["attempt"] == MAX_ATTEMPTS
    platform.assert_each_succeeded_once(prompts, timeout=300)


def test_a_task_that_kills_its_worker_every_time_fails_after_the_limit(platform):
    platform.env["TASK_MAX_ATTEMPTS"] = str(MAX_ATTEMPTS)
    workers = platform.start_all(workers=2, slots=2)
    crash = platform.submit("this input kills the worker running it", model=CRASH_MODEL)
    prompts = platform.submit_many("healthy", 20)
    # Dead workers are restarted (as a service manager would) until the crashing task has ended.
    with Babysitter(platform, workers) as babysitter:
        platform.wait_all_finished([crash], timeout=300)
    assert babysitter.restarts >= MAX_ATTEMPTS, babysitter.restarts

    ended = platform.client.get(f"/api/v1/tasks/{crash}").json()
    assert ended["status"] == "failed", ended
    assert "worker_lost" in str(ended["error"]), ended
    assert platform.tasks([crash])[crash]["attempt"] == MAX_ATTEMPTS
    platform.assert_each_succeeded_once(prompts, timeout=300)
