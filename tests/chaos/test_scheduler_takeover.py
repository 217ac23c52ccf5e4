"""The leading scheduler SIGKILLed mid-run: the standby (started second, idle
until then) dispatches within 5 s, and no task is lost or run twice.

Prints the takeover time: from the kill to the standby's first dispatch.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.chaos.harness import Platform

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

TAKEOVER_BOUND_SECONDS = 5.0


def _dispatch_times(platform: Platform, scheduler_name: str) -> list[datetime]:
    """When each of the scheduler's "dispatched" lines was written."""
    proc = next(p for p in platform.processes if p.name == scheduler_name)
    return [
        datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
        for line in proc.log_lines()
        if line.get("message", "").startswith("dispatched to the workers")
    ]


def test_the_standby_takes_over_when_the_leader_dies(platform):
    platform.start_server()
    for index in range(3):
        platform.start_worker(f"worker-{index}", slots=2)
    leader = platform.start_scheduler("scheduler-a")
    # A task run says scheduler-a leads before the standby starts.
    first = platform.submit("before the standby starts")
    platform.wait_all_finished([first], timeout=120)
    standby = platform.start_scheduler("scheduler-b")
    platform.wait_for(lambda: "standby" in standby.log_text(), 120, "scheduler-b never stood by")

    # 60 tasks of ~0.8 s over 6 slots: ~8 s of work, so the kill lands mid-run.
    prompts = platform.submit_many("before-kill", 60)
    time.sleep(3)
    killed_at = datetime.now(UTC)
    leader.kill()
    prompts |= platform.submit_many("after-kill", 20)
    platform.assert_each_succeeded_once(prompts, timeout=300)
    started = platform.attempts_started()
    assert {task_id: started.get(task_id) for task_id in prompts} == dict.fromkeys(prompts, 1), "a task ran twice"

    dispatches = _dispatch_times(platform, "scheduler-b")
    assert dispatches, f"the standby never dispatched:\n{platform.logs_text()}"
    assert min(dispatches) > killed_at, "the standby dispatched while the leader was alive"
    takeover = (min(dispatches) - killed_at).total_seconds()
    print(f"\nCHAOS scheduler takeover: the standby's first dispatch {takeover:.2f} s after the leader's SIGKILL")
    assert takeover <= TAKEOVER_BOUND_SECONDS
