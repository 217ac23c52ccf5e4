"""300 tasks over 3 workers while workers are SIGKILLed at random moments (a
seeded schedule) and restarted under their names: every task succeeds with
its whole output, its end is recorded once, and it is charged once.

Prints the delay from each kill to the re-claim of each task the killed
worker held (the figures docs/reliability.md quotes); its p99 is at most 10 s.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.chaos.harness import percentile

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

TASKS = 300
WORKERS = 3
SLOTS = 4
KILLS = 8
SEED = 11
# An echo task of 8 words at 10 words a second: ~0.8 s in a slot, so a kill
# finds tasks in flight.
WORDS = 8
# How long a killed worker stays down: back at once, a moment later, or long
# enough for its leases (TASK_LEASE_SECONDS, 5 s by default) to run out first.
DOWN_FOR_SECONDS = (0.0, 1.0, 8.0)
# Issue 11: a killed worker's tasks run again within seconds (lease and renewal defaults).
P99_BOUND_SECONDS = 10.0


def test_workers_killed_at_random_moments_lose_no_task_and_charge_none_twice(platform, watcher):
    rng = random.Random(SEED)
    # A task in flight at three kills would end failed (worker_lost) at the default limit of 3,
    # as it should (test_poison_task.py): here no task may be given up on.
    platform.env["TASK_MAX_ATTEMPTS"] = str(KILLS + 1)
    workers = platform.start_all(workers=WORKERS, slots=SLOTS)
    prompts = platform.submit_many("task", TASKS, words=WORDS)
    watcher.start()
    restarts: list[threading.Thread] = []

    def restart_later(index: int, down_for: float) -> None:
        time.sleep(down_for)
        workers[index] = platform.restart(workers[index])

    def alive() -> list[int]:
        return [i for i, worker in enumerate(workers) if worker.alive()]

    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.5, 3.0))
            # Never the last one standing: the run goes on while the killed ones come back.
            platform.wait_for(lambda: len(alive()) >= 2, 120, "the killed workers did not come back")
            index = rng.choice(alive())
            victim = workers[index]
            in_flight = platform.running_on(victim.name)
            killed_at = time.monotonic()
            victim.kill()
            # Back at once (its leases released on start), or down past its leases (the reaper re-queues).
            down_for = rng.choice(DOWN_FOR_SECONDS)
            watcher.watch(in_flight, killed_at, label=f"down {down_for:.0f} s")
            restart = threading.Thread(target=restart_later, args=(index, down_for))
            restart.start()
            restarts.append(restart)
    finally:
        for restart in restarts:  # none may start a worker after the test's teardown
            restart.join()
    rows = platform.assert_each_succeeded_once(prompts, timeout=600, kills=KILLS)
    deadline = time.monotonic() + 60
    while watcher.pending() and time.monotonic() < deadline:
        time.sleep(0.2)
    watcher.stop()

    delays = watcher.delays
    assert delays, "no kill found a task in flight"
    print(
        f"\nCHAOS worker kills: {KILLS} kills, {len(delays)} tasks in flight re-claimed; kill to re-claim "
        f"p50 {percentile(delays, 0.5):.2f} s, p99 {percentile(delays, 0.99):.2f} s, max {max(delays):.2f} s; "
        f"{sum(1 for r in rows.values() if r['attempt'] > 1)} of {TASKS} tasks ran more than once"
    )
    for label, some in sorted(watcher.delays_by_label.items()):
        print(f"CHAOS worker kills, worker {label}: {len(some)} tasks, kill to re-claim "
              f"p50 {percentile(some, 0.5):.2f} s, max {max(some):.2f} s")
    assert percentile(delays, 0.99) <= P99_BOUND_SECONDS
