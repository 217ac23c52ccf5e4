"""Redis (the workers' queues, wake-ups and streams) lost mid-run, by a
restart that forgets everything and by a flush: no task is lost, none runs
twice over, and the API never answers 500 meanwhile."""

from __future__ import annotations

import time
from collections import Counter

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

OUTAGE_SECONDS = 3.0


def test_a_redis_restart_mid_run_loses_no_task(platform):
    platform.start_all()
    prompts = platform.submit_many("before-restart", 60)
    time.sleep(2)
    platform.cluster.redis.kill()
    answers = platform.probe(next(iter(prompts)), OUTAGE_SECONDS)
    platform.cluster.redis.start()  # empty: nothing was persisted
    prompts |= {task_id: "during the outage" for a in answers if (task_id := a.created_task())}
    prompts |= platform.submit_many("after-restart", 20)

    first = next(iter(prompts))
    statuses = Counter(f"{a.method} {a.path.replace(first, '<id>')} {a.status}" for a in answers)
    print(f"\nCHAOS redis restart: answers while down {dict(statuses)}")
    assert [a for a in answers if a.status is None or a.status >= 500 and a.status != 503] == []
    platform.assert_each_succeeded_once(prompts, timeout=300)


def test_a_redis_flush_mid_run_loses_no_task(platform):
    platform.start_all()
    prompts = platform.submit_many("before-flush", 60)
    time.sleep(2)
    platform.cluster.redis.flush()
    prompts |= platform.submit_many("after-flush", 20)
    platform.assert_each_succeeded_once(prompts, timeout=300)
