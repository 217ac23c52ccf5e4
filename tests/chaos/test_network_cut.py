"""A worker in a network namespace of its own (a veth pair to the host, where
PostgreSQL and Redis listen) is cut off mid-task and reconnected later: its
task is re-run by another worker, and its own late result is refused.

Needs root and ``ip netns`` (skipped without them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from tests.chaos.harness import NetworkNamespace, Platform, Proc, Watcher, netns_missing

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

WORDS = 40  # ~4 s at 10 words a second: long enough to be cut off in the middle


@pytest.fixture
def netns(cluster):
    reason = netns_missing()
    if reason:
        pytest.skip(reason)
    with NetworkNamespace.around(cluster) as namespace:
        yield namespace


@dataclass(frozen=True)
class CutOff:
    task_id: str
    prompt: str
    worker: Proc
    reclaimed_after: float  # seconds from the cut to another worker's claim


def _cut_off_mid_task(platform: Platform, netns: NetworkNamespace, watcher: Watcher) -> CutOff:
    """A task running on the namespace's worker when its network is cut; another
    worker (on the host) starts meanwhile; the network comes back once the task
    has ended, and the cut-off worker reports a free slot again."""
    platform.start_server()
    platform.start_scheduler()
    cut_off = platform.start_worker("worker-netns", slots=1, prefix=netns.exec_prefix,
                                    env=netns.env_for(platform.env))
    prompt = " ".join(f"w{i}" for i in range(WORDS))
    task_id = platform.submit(prompt)
    platform.wait_for(lambda: platform.tasks([task_id])[task_id]["state"] == "running", 60, "the task never ran")
    assert platform.tasks([task_id])[task_id]["worker_name"] == cut_off.name

    watcher.start()
    watcher.watch({task_id: 1}, time.monotonic())
    netns.cut()
    try:
        platform.start_worker("worker-host", slots=1)
        platform.wait_all_finished([task_id], timeout=300)
    finally:
        netns.restore()
    restored_at = datetime.now(UTC)
    # Back on the network, the cut-off worker records what it finished, or tries
    # to: once it reports no task in flight, its attempt has ended one way or the other.
    platform.wait_for(lambda: platform.worker_row(cut_off.name)["last_heartbeat_at"] > restored_at
                      and platform.worker_row(cut_off.name)["in_flight"] == 0, 120,
                      "the cut-off worker never came back with its slot free")
    watcher.stop()
    return CutOff(task_id, prompt, cut_off, watcher.delays[0])


def test_a_worker_cut_off_mid_task_is_replaced_by_another(netns, platform, watcher):
    cut = _cut_off_mid_task(platform, netns, watcher)
    after = platform.tasks([cut.task_id])[cut.task_id]
    assert (after["state"], after["worker_name"], after["attempt"]) == ("succeeded", "worker-host", 2), after
    assert platform.recorded_ends()[cut.task_id] == ["succeeded"], "two results recorded"
    body = platform.client.get(f"/api/v1/tasks/{cut.task_id}").json()
    assert (body["status"], body["output"]) == ("succeeded", cut.prompt), body
    platform.assert_charged_once(platform.tasks([cut.task_id]))
    print(f"\nCHAOS network cut: the cut-off worker's task re-claimed by another {cut.reclaimed_after:.2f} s "
          "after the cut")


def test_a_cut_off_workers_late_result_is_refused(netns, platform, watcher):
    """Issue 11: a worker that cannot reach its dependencies keeps its finished
    attempt's result and offers it when it is back; the task has moved on, so it is refused."""
    cut = _cut_off_mid_task(platform, netns, watcher)
    refusals = [line for line in cut.worker.log_lines()
                if cut.task_id in (line.get("task_id"), *line.get("message", "").split())
                and "no longer owns" in line.get("message", "")]
    assert refusals, f"the cut-off worker never offered its late result:\n{cut.worker.log_text()[-4000:]}"
    assert platform.recorded_ends()[cut.task_id] == ["succeeded"], "the late result was recorded too"
