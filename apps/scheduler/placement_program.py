"""Where each model version runs, as a mixed-integer program (docs/scheduling.md, "Placement as
an integer program").

Pure Python, no Django: the same inputs and result as ``placement.plan_placement`` (first-fit
decreasing, FFD), which ``plan`` computes first and falls back to. The program chooses, for
every GPU item, the GPUs that hold a copy of it so as to serve the most demand (the tasks
queued and running for each item, served by the task slots of the workers holding a copy),
then, lexicographically, to place the most items, to hold the most of the copies wanted, and
to move the fewest copies from where they are. scipy.optimize.milp (HiGHS) solves it in two
passes (served demand, then the rest with the served demand held), both within one time
limit. Its plan is kept only when it is at least as good as FFD's on the same input, in that
order (on a tie, FFD's plan: the same worth, placed where FFD always put it), so the program
never serves less demand than FFD, whatever the solver managed in the time.

CPU items are FFD's business (every worker that may host them, no memory), and so is the
order of each item's slots: the copies it keeps, in their current order (the first kept one
is the primary), then the new ones in the bins' order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from apps.scheduler.placement import (
    GPU,
    NO_HOST,
    Bin,
    Item,
    Plan,
    Short,
    Slot,
    Unplaced,
    plan_placement,
    unplaced_reason,
)

try:  # the solver is optional: without scipy, placement is FFD (logged)
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_array, csr_array
    from scipy.sparse.csgraph import maximum_flow
except ImportError:  # pragma: no cover - scipy is in requirements.txt
    milp = None

logger = logging.getLogger(__name__)

FFD = "first-fit decreasing"
PROGRAM = "integer program"
# Past this many (item, GPU) pairs where a copy could go, the program is solved over a
# neighbourhood of FFD's plan (``_Problem._neighbourhood``): every pair is too many for HiGHS
# to settle within a placement round's time (bench/placement.py: 100 workers, ~70,000 pairs).
MAX_PAIRS = 5_000
CANDIDATES = 8
FIRST_PASS_SHARE = 0.6


@dataclass(frozen=True, order=True)
class Worth:
    """What a plan achieves, compared lexicographically: more served demand first, then more
    items placed, more copies, fewer copies moved from where they were (more kept)."""

    served: int
    placed: int
    copies: int
    kept: int


def plan(
    items: Sequence[Item],
    bins: Sequence[Bin],
    current: Mapping[str, Sequence[Slot]] | None = None,
    *,
    desired: Mapping[str, int] | None = None,
    time_limit: float = 2.0,
) -> Plan:
    """The program's plan for ``items`` on ``bins`` (arguments as ``placement.plan_placement``),
    or FFD's when the solver is absent, finds nothing better within ``time_limit`` seconds, or
    FFD's plan is as good. ``Plan.method`` says which, and it is logged."""
    fallback = plan_placement(items, bins, current, desired=desired)  # also checks the input
    if milp is None:
        return _chosen(replace(fallback, method=f"{FFD} (scipy is not installed)"))
    current = current or {}
    desired = desired or {}
    start = time.monotonic()
    problem = _Problem(items, bins, current, desired, fallback)
    if not problem.pairs:
        return _chosen(replace(fallback, method=f"{FFD} (nothing for the program to choose)"), logging.DEBUG)
    chosen, status = problem.solve(start + time_limit)
    if chosen is None:
        return _chosen(replace(fallback, method=f"{FFD} (the solver found no plan: {status})"))
    program = problem.plan(chosen, fallback)
    ours, theirs = worth(program, items, bins, current), worth(fallback, items, bins, current)
    if ours < theirs:
        return _chosen(replace(fallback, method=f"{FFD} (the solver's best in the time, {ours}, is worse: {status})"))
    if ours == theirs:
        return _chosen(replace(fallback, method=f"{PROGRAM} ({status}; FFD's plan is as good)"), logging.DEBUG)
    return _chosen(replace(program, method=f"{PROGRAM} ({status})"), logging.DEBUG)


def _chosen(result: Plan, level: int = logging.INFO) -> Plan:
    # Every few seconds (apps.scheduler.placer): the program's plans at debug, a fallback at info.
    logger.log(level, "placement: %s", result.method)
    return result


def worth(result: Plan, items: Sequence[Item], bins: Sequence[Bin], current: Mapping[str, Sequence[Slot]]) -> Worth:
    """The plan's ``Worth``: demand served as a maximum flow (each GPU item's demand to the
    workers holding a copy of it, each worker's slots shared by the items it holds)."""
    gpu = [item for item in items if item.device == GPU]
    kept = sum(len(set(result.slots.get(item.key, ())) & set(current.get(item.key, ()))) for item in gpu)
    return Worth(
        served=served_demand(result, items, bins),
        placed=sum(1 for item in gpu if item.key in result.slots),
        copies=sum(len(result.slots.get(item.key, ())) for item in gpu),
        kept=kept,
    )


def served_demand(result: Plan, items: Sequence[Item], bins: Sequence[Bin]) -> int:
    """Tasks the plan's GPU copies can run at once: a maximum flow from each item (its demand)
    through the workers holding it to their slots (None: as many as the demand)."""
    demand = {item.key: item.demand for item in items if item.device == GPU and item.demand > 0}
    total = sum(demand.values())
    if not total:
        return 0
    keys = list(demand)
    workers = [b.key for b in bins]
    worker_at = {key: n for n, key in enumerate(workers)}
    # Nodes: 0 source, 1..I items, then the workers, then the sink.
    sink = 1 + len(keys) + len(workers)
    rows, cols, caps = [], [], []
    for n, key in enumerate(keys):
        rows.append(0)
        cols.append(1 + n)
        caps.append(demand[key])
        for bin_key in {slot.bin for slot in result.slots.get(key, ()) if slot.gpu is not None}:
            rows.append(1 + n)
            cols.append(1 + len(keys) + worker_at[bin_key])
            caps.append(total)
    for n, b in enumerate(bins):
        rows.append(1 + len(keys) + n)
        cols.append(sink)
        caps.append(total if b.slots is None else min(b.slots, total))
    graph = csr_array(
        (np.array(caps, dtype=np.int32), (np.array(rows), np.array(cols))), shape=(sink + 1, sink + 1)
    )
    return int(maximum_flow(graph, 0, sink).flow_value)


class _Problem:
    """The program for one input: its variables, constraints and the two solves."""

    def __init__(
        self, items: Sequence[Item], bins: Sequence[Bin], current: Mapping[str, Sequence[Slot]],
        desired: Mapping[str, int], fallback: Plan,
    ) -> None:
        self.items = [item for item in items if item.device == GPU]
        self.bins = bins
        self.current = current
        self.desired = desired
        # The GPUs in the bins' order, then (item, GPU) pairs where the copy fits and is allowed:
        # one binary x each. The rest are 0 and get no variable.
        self.bin_at = {b.key: n for n, b in enumerate(bins)}
        self.gpus = [(b.key, g.index, g.free_bytes) for b in bins for g in b.gpus]
        # fits[i, g]: a copy of item i fits on GPU g and its worker may host it (numpy: a
        # thousand workers make millions of pairs).
        need = np.array([item.gpu_memory_bytes for item in self.items], dtype=np.int64)
        free = np.array([free for _, _, free in self.gpus], dtype=np.int64)
        self.fits = need[:, None] <= free[None, :]
        for g, (bin_key, _, _) in enumerate(self.gpus):
            hosts = bins[self.bin_at[bin_key]].hosts
            if hosts is not None:
                self.fits[:, g] &= np.array([item.key in hosts for item in self.items], dtype=bool)
        if int(self.fits.sum()) > MAX_PAIRS:
            self.pairs = self._neighbourhood(fallback)
        else:
            self.pairs = [(int(i), int(g)) for i, g in zip(*np.nonzero(self.fits), strict=True)]

    def _neighbourhood(self, fallback: Plan) -> list[tuple[int, int]]:
        """The pairs of a large fleet: each item's current GPUs, FFD's, and the CANDIDATES GPUs
        (on distinct workers) with the most memory FFD's plan leaves free there. FFD's plan is
        one of the program's solutions, so its optimum is still at least as good; it is no
        longer the optimum over every placement, but the solver has a chance to find it."""
        slot_at = {(b, index): g for g, (b, index, _) in enumerate(self.gpus)}
        left = [free for _, _, free in self.gpus]
        for item in self.items:
            for slot in fallback.slots.get(item.key, ()):
                if slot.gpu is not None:  # FFD's slots for a GPU item are all on GPUs
                    left[slot_at[(slot.bin, slot.gpu)]] -= item.gpu_memory_bytes
        roomiest = sorted(range(len(self.gpus)), key=lambda g: -left[g])
        pairs: set[tuple[int, int]] = set()
        for i, item in enumerate(self.items):
            for slot in [*self.current.get(item.key, ()), *fallback.slots.get(item.key, ())]:
                g = slot_at.get((slot.bin, slot.gpu)) if slot.gpu is not None else None
                if g is not None and self.fits[i, g]:
                    pairs.add((i, g))
            workers: set[str] = set()
            for g in roomiest:
                if len(workers) >= CANDIDATES or left[g] < item.gpu_memory_bytes:
                    break
                if self.fits[i, g] and self.gpus[g][0] not in workers:
                    workers.add(self.gpus[g][0])
                    pairs.add((i, g))
        return sorted(pairs)

    def solve(self, deadline: float) -> tuple[set[tuple[int, int]] | None, str]:
        """The chosen (item, GPU) pairs and the solver's last word, or (None, why)."""
        model = _Model(self)
        chosen: set[tuple[int, int]] | None = None
        status = "optimal"
        if model.served_columns:
            # Most of the time, not all: the second pass needs some to settle the lower tiers.
            first_deadline = time.monotonic() + FIRST_PASS_SHARE * (deadline - time.monotonic())
            found = model.run(model.served_objective(), first_deadline)
            if found is None:
                return None, model.status
            served = round(float(found[model.served_columns].sum()))
            chosen, status = model.pairs_in(found), model.status
            # The served demand is an integer (a flow of integer capacities): held to it, not below.
            model.hold_served(served - 0.5)
        found = model.run(model.rest_objective(), deadline)
        if found is not None:
            return model.pairs_in(found), model.status
        if chosen is None:
            return None, model.status
        # The first pass's plan serves the most demand; only the lower tiers are left unsettled.
        return chosen, f"{status}; the second pass: {model.status}"

    def _fill(
        self,
        in_order: Sequence[tuple[int, Item]],
        by_item: dict[int, list[Slot]],
        remaining: dict[tuple[str, int], int],
    ) -> None:
        """First fit into what a plan cut short by the time limit left free: items it left out,
        then copies short of the wanted count. A copy more never serves less (a flow only gains
        from an edge), so this only climbs the tiers; an optimal plan has no room for any."""

        def first_fit(item: Item, taken: Sequence[Slot]) -> Slot | None:
            for bin_key, index, _ in self.gpus:
                if (
                    remaining[(bin_key, index)] >= item.gpu_memory_bytes
                    and self.bins[self.bin_at[bin_key]].may_host(item.key)
                    and all(slot.bin != bin_key for slot in taken)
                ):
                    remaining[(bin_key, index)] -= item.gpu_memory_bytes
                    return Slot(bin_key, index)
            return None

        for i, item in in_order:
            if i not in by_item and (slot := first_fit(item, ())) is not None:
                by_item[i] = [slot]
        for i, item in in_order:
            while i in by_item and len(by_item[i]) < self.desired.get(item.key, 1):
                if (slot := first_fit(item, by_item[i])) is None:
                    break
                by_item[i].append(slot)

    def plan(self, chosen: set[tuple[int, int]], fallback: Plan) -> Plan:
        """The chosen pairs as a Plan: FFD's CPU items, each GPU item's kept copies first."""
        slots = {key: where for key, where in fallback.slots.items() if key not in {i.key for i in self.items}}
        unplaced = [u for u in fallback.unplaced if u.item not in {i.key for i in self.items}]
        short = []
        remaining = {(b, g): free for b, g, free in self.gpus}
        by_item: dict[int, list[Slot]] = {}
        for i, g in sorted(chosen, key=lambda pair: pair[1]):
            bin_key, index, _ = self.gpus[g]
            by_item.setdefault(i, []).append(Slot(bin_key, index))
            remaining[(bin_key, index)] -= self.items[i].gpu_memory_bytes
        # In FFD's order (largest first), so that its plan and the program's list things alike.
        in_order = sorted(enumerate(self.items), key=lambda pair: (-pair[1].gpu_memory_bytes, pair[1].key))
        self._fill(in_order, by_item, remaining)
        for i, item in in_order:
            copies = by_item.get(i)
            if copies:
                before = [slot for slot in self.current.get(item.key, ()) if slot in copies]
                slots[item.key] = tuple(before + [slot for slot in copies if slot not in before])
                if len(copies) < self.desired.get(item.key, 1):
                    short.append(Short(item.key, self.desired[item.key], len(copies)))
        ffd_reasons = {u.item: u.reason for u in fallback.unplaced}
        for _, item in in_order:
            if item.key in slots:
                continue
            hosting = [(b, g, free) for b, g, free in self.gpus if self.bins[self.bin_at[b]].may_host(item.key)]
            reason = ffd_reasons.get(item.key) or NO_HOST
            if item.key not in ffd_reasons and hosting:  # FFD placed it, the program did not
                most_left = max(remaining[(b, g)] for b, g, _ in hosting)
                reason = unplaced_reason(item, max(free for _, _, free in hosting), most_left)
            unplaced.append(Unplaced(item.key, reason))
        return Plan(slots=slots, unplaced=tuple(unplaced), short=tuple(short))


class _Model:
    """The matrices of the program (docs/scheduling.md has it written out).

    Columns: x[p] for each allowed (item, GPU) pair p (binary: a copy there); y[i, w] for each
    item with demand and worker it may be on (continuous: its tasks that worker's slots serve);
    z[i] per item that has a pair (continuous in [0, 1], at most its number of copies: placed).
    """

    def __init__(self, problem: _Problem) -> None:
        self.problem = problem
        items, gpus, bins = problem.items, problem.gpus, problem.bins
        pairs = problem.pairs
        n_x = len(pairs)
        worker_of = [problem.bin_at[gpus[g][0]] for _, g in pairs]
        # (item, worker) cells with a y column: demand there, and slots (or no limit) to serve it.
        cells: dict[tuple[int, int], list[int]] = {}
        for p, (i, _) in enumerate(pairs):
            cells.setdefault((i, worker_of[p]), []).append(p)
        served_cells = [
            (i, w) for (i, w) in cells if items[i].demand > 0 and (bins[w].slots is None or bins[w].slots)
        ]
        self.y_at = {cell: n_x + n for n, cell in enumerate(served_cells)}
        placed_items = sorted({i for i, _ in pairs})
        self.z_at = {i: n_x + len(served_cells) + n for n, i in enumerate(placed_items)}
        self.n = n_x + len(served_cells) + len(placed_items)
        self.served_columns = [self.y_at[cell] for cell in served_cells]

        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        upper: list[float] = []

        def row(entries: Sequence[tuple[int, float]], at_most: float) -> None:
            r = len(upper)
            for col, val in entries:
                rows.append(r)
                cols.append(col)
                vals.append(val)
            upper.append(at_most)

        by_gpu: dict[int, list[int]] = {}
        by_item: dict[int, list[int]] = {}
        for p, (i, g) in enumerate(pairs):
            by_gpu.setdefault(g, []).append(p)
            by_item.setdefault(i, []).append(p)
        # Memory: the copies on a GPU fit in its free memory (only where they could overflow it).
        for g, ps in by_gpu.items():
            need = [items[pairs[p][0]].gpu_memory_bytes for p in ps]
            if sum(need) > gpus[g][2]:
                scale = gpus[g][2] or 1  # bytes to a fraction of the GPU: well-scaled coefficients
                row([(p, n / scale) for p, n in zip(ps, need, strict=True)], gpus[g][2] / scale)
        # At most one copy of an item per worker.
        for ps in cells.values():
            if len(ps) > 1:
                row([(p, 1.0) for p in ps], 1.0)
        # At most the copies wanted (the replica scaler's count, 1 by default), and placed only with one.
        for i, ps in by_item.items():
            wanted = problem.desired.get(items[i].key, 1)
            if len({worker_of[p] for p in ps}) > wanted:
                row([(p, 1.0) for p in ps], float(wanted))
            row([(self.z_at[i], 1.0)] + [(p, -1.0) for p in ps], 0.0)
        # Served demand: only on a worker holding a copy, within the worker's slots and the item's demand.
        by_worker: dict[int, list[int]] = {}
        by_demand: dict[int, list[int]] = {}
        self.y_upper: dict[int, float] = {}
        for (i, w), col in self.y_at.items():
            slots = bins[w].slots
            cap = float(items[i].demand if slots is None else min(items[i].demand, slots))
            self.y_upper[col] = cap
            row([(col, 1.0)] + [(p, -cap) for p in cells[(i, w)]], 0.0)
            by_worker.setdefault(w, []).append(col)
            by_demand.setdefault(i, []).append(col)
        for w, ys in by_worker.items():
            limit = bins[w].slots
            if limit is not None and sum(self.y_upper[c] for c in ys) > limit:
                row([(c, 1.0) for c in ys], float(limit))
        for i, ys in by_demand.items():
            if sum(self.y_upper[c] for c in ys) > items[i].demand:
                row([(c, 1.0) for c in ys], float(items[i].demand))
        self.rows, self.cols, self.vals, self.upper = rows, cols, vals, upper
        self.extra: list[tuple[np.ndarray[Any, Any], float]] = []

        # Weights of the second pass, each tier worth more than everything below it can change:
        # a kept copy 1, a copy more than every kept one, an item placed more than every copy.
        slot_at = {(b, index): g for g, (b, index, _) in enumerate(gpus)}
        keep = {
            (i, slot_at[(slot.bin, slot.gpu)])
            for i, item in enumerate(items)
            for slot in problem.current.get(item.key, ())
            if slot.gpu is not None and (slot.bin, slot.gpu) in slot_at
        }
        self.kept_pairs = [p for p, pair in enumerate(pairs) if pair in keep]
        most_copies = sum(
            min(problem.desired.get(items[i].key, 1), len({worker_of[p] for p in ps})) for i, ps in by_item.items()
        )
        self.copy_weight = len(self.kept_pairs) + 1
        self.item_weight = self.copy_weight * most_copies + len(self.kept_pairs) + 1
        self.status = ""

    def served_objective(self) -> np.ndarray[Any, Any]:
        c = np.zeros(self.n)
        c[self.served_columns] = -1.0  # milp minimises
        # Items placed, at a weight that all of them together stay under one task served: the
        # same order as the tiers, so that a first pass cut short by the time limit has not left
        # out items for nothing (the served demand of an optimum is a whole number).
        c[list(self.z_at.values())] = -1.0 / (len(self.z_at) + 1)
        return c

    def rest_objective(self) -> np.ndarray[Any, Any]:
        c = np.zeros(self.n)
        c[: len(self.problem.pairs)] = -float(self.copy_weight)
        c[self.kept_pairs] -= 1.0
        c[list(self.z_at.values())] = -float(self.item_weight)
        return c

    def hold_served(self, at_least: float) -> None:
        a = np.zeros(self.n)
        a[self.served_columns] = 1.0
        self.extra.append((a, at_least))

    def run(self, objective: np.ndarray[Any, Any], deadline: float) -> np.ndarray[Any, Any] | None:
        left = deadline - time.monotonic()
        if left <= 0:
            self.status = "the time limit passed before the solver ran"
            return None
        n_x = len(self.problem.pairs)
        integrality = np.zeros(self.n)
        integrality[:n_x] = 1
        high = np.ones(self.n)
        for col, cap in self.y_upper.items():
            high[col] = cap
        matrix = coo_array(
            (np.array(self.vals), (np.array(self.rows, dtype=np.int64), np.array(self.cols, dtype=np.int64))),
            shape=(len(self.upper), self.n),
        ).tocsr()
        constraints = [LinearConstraint(matrix, -np.inf, np.array(self.upper))] if self.upper else []
        constraints += [LinearConstraint(a.reshape(1, -1), at_least, np.inf) for a, at_least in self.extra]
        result = milp(
            objective, integrality=integrality, bounds=Bounds(np.zeros(self.n), high), constraints=constraints,
            options={"time_limit": left, "mip_rel_gap": 0.0},
        )
        self.status = "optimal" if result.status == 0 else str(result.message)
        if result.x is None or result.status not in (0, 1):
            return None
        return np.asarray(result.x)

    def pairs_in(self, found: np.ndarray[Any, Any]) -> set[tuple[int, int]]:
        pairs = self.problem.pairs
        return {pairs[p] for p in range(len(pairs)) if found[p] > 0.5}

