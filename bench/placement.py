"""Placement: first-fit decreasing (apps.scheduler.placement) against the integer program
(apps.scheduler.placement_program) on random fleets, to see what the program buys and what
it costs (docs/benchmarks.md, "Placement"; docs/scheduling.md has the formulation).

Each seed draws a fleet (workers of 1 to 4 GPUs of 24, 48 or 80 GiB, 2 to 8 task slots),
model versions of 1 to 40 GiB whose demand (tasks queued and running) is heavy-tailed, and
the replicas the scaler would want for it. The fleet's last plan (FFD's) is the current
placement; then a tenth of the workers leave, demand is drawn anew and a tenth more versions
arrive, and both methods plan from that current placement. Pure Python, no database.

    .venv/bin/python bench/placement.py                       # 10, 100, 1,000 workers; 5 seeds each
    .venv/bin/python bench/placement.py --workers 10,100 --seeds 3 --time-limit 2

Prints, per fleet size, the mean over seeds of: demand served (tasks the placed copies'
slots can run at once), versions placed, copies moved (current copies on surviving GPUs not
kept), and wall time of each method; then how often the program's plan was used and the
seeds where it served less than FFD (none: it falls back to FFD's plan then).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.scheduler import placement_program  # noqa: E402
from apps.scheduler.placement import GIB, Bin, Gpu, Item, Plan, Slot, plan_placement  # noqa: E402


def fleet(rng: random.Random, workers: int) -> list[Bin]:
    return [
        Bin(
            f"w{n}",
            tuple(Gpu(g, rng.choice([24, 48, 80]) * GIB) for g in range(rng.randint(1, 4))),
            slots=rng.randint(2, 8),
        )
        for n in range(workers)
    ]


def versions(rng: random.Random, count: int, start: int = 0) -> list[Item]:
    return [Item(f"m{n}@v1", "gpu", int(rng.uniform(1, 40) * GIB)) for n in range(start, start + count)]


def with_demand(rng: random.Random, items: list[Item]) -> tuple[list[Item], dict[str, int]]:
    """Demand: most versions idle or nearly, a few with long queues (Pareto); the copies wanted as
    the replica scaler would ask: one per 8 tasks, at most 4."""
    loaded = []
    desired = {}
    for item in items:
        demand = 0 if rng.random() < 0.4 else min(200, int(rng.paretovariate(1.2)) - 1 + rng.randint(0, 3))
        loaded.append(Item(item.key, item.device, item.gpu_memory_bytes, demand))
        desired[item.key] = max(1, min(4, -(-demand // 8)))
    return loaded, desired


def moves(plan: Plan, current: dict[str, tuple[Slot, ...]], bins: list[Bin]) -> int:
    alive = {(b.key, g.index) for b in bins for g in b.gpus}
    return sum(
        1
        for key, slots in current.items()
        for slot in slots
        if (slot.bin, slot.gpu) in alive and slot not in plan.slots.get(key, ())
    )


def run(workers: int, seed: int, time_limit: float) -> dict[str, float | str]:
    rng = random.Random(seed * 7919 + workers)
    bins = fleet(rng, workers)
    gpus = sum(len(b.gpus) for b in bins)
    # About 1.3 versions per GPU of 20 GiB on average: memory is tight, as in a busy fleet.
    items = versions(rng, max(4, int(gpus * 1.3)))
    loaded, desired = with_demand(rng, items)
    current = dict(plan_placement(loaded, bins, desired=desired).slots)

    survivors = [b for b in bins if rng.random() >= 0.1] or bins[:1]
    items = items + versions(rng, max(1, len(items) // 10), start=len(items))
    loaded, desired = with_demand(rng, items)

    started = time.perf_counter()
    ffd = plan_placement(loaded, survivors, current, desired=desired)
    ffd_s = time.perf_counter() - started
    started = time.perf_counter()
    program = placement_program.plan(loaded, survivors, current, desired=desired, time_limit=time_limit)
    program_s = time.perf_counter() - started
    return {
        "gpus": sum(len(b.gpus) for b in survivors),
        "versions": len(items),
        "demand": sum(item.demand for item in loaded),
        "ffd_served": placement_program.served_demand(ffd, loaded, survivors),
        "prog_served": placement_program.served_demand(program, loaded, survivors),
        "ffd_placed": len(ffd.slots),
        "prog_placed": len(program.slots),
        "ffd_moves": moves(ffd, current, survivors),
        "prog_moves": moves(program, current, survivors),
        "ffd_s": ffd_s,
        "prog_s": program_s,
        "method": program.method,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="10,100,1000", help="fleet sizes, comma-separated")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--time-limit", type=float, default=2.0, help="the program's limit, seconds (per plan)")
    args = parser.parse_args()

    print(f"time limit {args.time_limit:g} s; means over {args.seeds} seeds\n")
    header = (
        f"{'workers':>7} {'GPUs':>5} {'versions':>8} {'demand':>7} | {'served FFD':>10} {'program':>8} | "
        f"{'placed FFD':>10} {'program':>8} | {'moves FFD':>9} {'program':>8} | {'s FFD':>7} {'program':>8} | "
        f"{'program used':>12}"
    )
    print(header)
    print("-" * len(header))
    worse = []
    methods: dict[str, int] = {}
    for workers in (int(w) for w in args.workers.split(",")):
        rows = [run(workers, seed, args.time_limit) for seed in range(args.seeds)]

        def mean(field: str, rows: list[dict[str, float | str]] = rows) -> float:
            return statistics.mean(float(row[field]) for row in rows)

        used = sum(1 for row in rows if str(row["method"]).startswith(placement_program.PROGRAM))
        for seed, row in enumerate(rows):
            methods[str(row["method"]).split(" (")[0] + " (" + str(row["method"]).split(" (")[1][:40]] = (
                methods.get(str(row["method"]).split(" (")[0] + " (" + str(row["method"]).split(" (")[1][:40], 0) + 1
            )
            if float(row["prog_served"]) < float(row["ffd_served"]):
                worse.append((workers, seed))
        print(
            f"{workers:>7} {mean('gpus'):>5.0f} {mean('versions'):>8.0f} {mean('demand'):>7.0f} | "
            f"{mean('ffd_served'):>10.1f} {mean('prog_served'):>8.1f} | "
            f"{mean('ffd_placed'):>10.1f} {mean('prog_placed'):>8.1f} | "
            f"{mean('ffd_moves'):>9.1f} {mean('prog_moves'):>8.1f} | "
            f"{mean('ffd_s'):>7.3f} {mean('prog_s'):>8.3f} | {used:>5}/{len(rows)}"
        )
    print("\nmethods:", "; ".join(f"{count}× {method}" for method, count in sorted(methods.items())))
    print("seeds where the program served less than FFD:", worse or "none")


if __name__ == "__main__":
    main()
