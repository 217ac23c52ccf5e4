"""Cost of one scheduling decision of apps.scheduler.policy.FairScheduler as the queue grows.

A queue of n tasks from many tenants (weights, all three classes, ranks,
arrivals spread over two aging periods so that classes are aging) is held at
n while each step adds one task and takes the next one (``add`` + ``next``),
with 5 % of the tenants at their running cap and one tenant swapped in and
out of that set at every step, as completions and dispatches do. Reports the
median over repeated runs of the wall time per step, its ratio to the
smallest queue, and log2(n)/log2(n_smallest) — the growth an O(log n)
decision would show. The figure is this process's CPU time, which a busy
shared machine disturbs far less than wall time (printed beside it). A
separate pass counts heap operations per decision: the work that must stay
constant for the cost to grow only with the heaps' log depth.

    python bench/scheduler_cost.py [--quick] [--sizes 1000,10000,100000] [--tenants 1000]
"""

from __future__ import annotations

import argparse
import gc
import heapq
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from apps.scheduler import policy  # noqa: E402
from apps.scheduler.policy import CLASSES, FairScheduler  # noqa: E402

AGING = 300.0
CLASS_MIX = (0.2, 0.5, 0.3)  # interactive, normal, batch
WEIGHTS = (0.5, 1.0, 1.0, 2.0, 4.0)
CAPPED_SHARE = 0.05


def workload(rng: random.Random, tenants: int):
    """An endless stream of task parameters: (tenant, weight, class, estimated cost, rank)."""
    weight = {f"tenant{t}": rng.choice(WEIGHTS) for t in range(tenants)}
    names = list(weight)
    while True:
        tenant = rng.choice(names)
        priority_class = rng.choices(CLASSES, CLASS_MIX)[0]
        cost = max(1, round(rng.lognormvariate(math.log(600), 0.9)))
        yield tenant, weight[tenant], priority_class, cost, rng.randrange(6)


def steady_state(size: int, tenants: int, steps: int, seed: int) -> Callable[[], None]:
    """A queue of ``size`` tasks and a function running ``steps`` add+next steps on it (keeping it at ``size``)."""
    rng = random.Random(seed)
    stream = workload(rng, tenants)
    scheduler = FairScheduler(aging_seconds=AGING)
    start = 2 * AGING
    for n in range(size):  # waited between 0 and two aging periods
        tenant, weight, priority_class, cost, rank = next(stream)
        scheduler.add(n, tenant, weight, priority_class, cost, start, rank=rank, enqueued_at=rng.uniform(0, start))
    at_cap = [f"tenant{t}" for t in rng.sample(range(tenants), int(tenants * CAPPED_SHARE))]
    planned = [(next(stream), rng.randrange(len(at_cap)), f"tenant{rng.randrange(tenants)}") for _ in range(steps)]

    def run() -> None:
        now, task_id, capped = start, size, set(at_cap)
        for (tenant, weight, priority_class, cost, rank), released, newly in planned:
            now += 0.01
            if newly not in capped:  # one tenant's slot frees up, another reaches its cap
                capped.discard(at_cap[released])
                capped.add(newly)
                at_cap[released] = newly
            scheduler.add(task_id, tenant, weight, priority_class, cost, now, rank=rank)
            scheduler.next(now, capped)
            task_id += 1
        assert len(scheduler) == size

    return run


def measure(size: int, tenants: int, steps: int, seed: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per add+next at a steady queue of ``size`` tasks."""
    run = steady_state(size, tenants, steps, seed)
    gc.collect()
    gc.disable()
    try:
        started, started_cpu = time.perf_counter(), time.process_time()
        run()
        cpu = time.process_time() - started_cpu
        wall = time.perf_counter() - started
    finally:
        gc.enable()
    return cpu / steps, wall / steps


class CountingHeapq:
    """Stands in for the policy module's ``heapq`` to count heap operations (a heapify counts its length)."""

    def __init__(self) -> None:
        self.operations = 0

    def heappush(self, heap: list, item: object) -> None:
        self.operations += 1
        heapq.heappush(heap, item)

    def heappop(self, heap: list) -> object:
        self.operations += 1
        return heapq.heappop(heap)

    def heapify(self, heap: list) -> None:
        self.operations += len(heap)
        heapq.heapify(heap)


def heap_operations(size: int, tenants: int, steps: int, seed: int) -> float:
    """Heap operations per add+next: the algorithm's work, apart from each operation's O(log) depth."""
    run = steady_state(size, tenants, steps, seed)
    counter = CountingHeapq()
    policy.heapq = counter
    try:
        run()
    finally:
        policy.heapq = heapq
    return counter.operations / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--sizes", default="1000,10000,100000", help="queue lengths, comma-separated")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    steps, repeats = (5_000, 3) if args.quick else (20_000, 7)

    print(f"Python {platform.python_version()} on {platform.machine()}, {args.tenants} tenants, "
          f"{CAPPED_SHARE:.0%} capped, aging {AGING:g} s; {steps} add+next steps × {repeats} runs per size")
    print(f"{'queued':>8} {'CPU µs/decision: median':>24} {'min':>6} {'wall median':>12} "
          f"{'median vs smallest':>19} {'log2 n ratio':>13} {'heap ops/decision':>18}")
    base = None
    for size in sizes:
        runs = [measure(size, args.tenants, steps, args.seed + r) for r in range(repeats)]
        cpu = [c * 1e6 for c, _ in runs]
        median = statistics.median(cpu)
        base = base or (median, size)
        print(f"{size:>8} {median:>24.1f} {min(cpu):>6.1f} {statistics.median(w * 1e6 for _, w in runs):>12.1f} "
              f"{median / base[0]:>18.2f}× {math.log2(size) / math.log2(base[1]):>12.2f}× "
              f"{heap_operations(size, args.tenants, steps, args.seed):>18.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
