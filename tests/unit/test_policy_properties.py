"""Property tests of the scheduling policy (apps.scheduler.policy) and the budget rule (apps.scheduler.budget).

A flow is one tenant's queued tasks of one class. What is proved, for any
sequence of operations hypothesis generates:

0. Agreement: FairScheduler makes exactly the decisions of ReferenceScheduler
   below, a transcription of docs/scheduling.md that rescans every task at
   each step; the heaps, lazy deletion and copies change the cost, never the
   answer (``next``, ``peek_order`` and ``position`` are all compared).
1. No starvation.
   a. Every queued task that is not removed is dispatched exactly once, under
      any interleaving of arrivals, caps, removals and corrections.
   b. A task that heads its flow and has waited ``base_class × aging_seconds``
      (twice for batch) competes in the top class, and nothing of a lower
      effective class is dispatched while it waits (property 3 with aging on).
   c. The wait bound once there: every other flow Y gets at most
      ``w_Y·ĉ_X/w_X + ĉ_Y`` of work dispatched before x (ĉ = the flow's
      largest estimated cost, w = tenant weight × class weight; no caps,
      exact estimates, other flows in the top class or in x's class): about
      one task per flow, whatever arrives meanwhile.
2. Weighted fair share: over any stretch of decisions during which two flows
   of one class stay backlogged, ``|W_i/w_i − W_j/w_j| ≤ ĉ_i/w_i + ĉ_j/w_j``
   (W = actual cost dispatched, each task corrected at completion,
   ĉ = the flow's largest actual cost).
3. Class order: the dispatched task is the head of its flow, and its class's
   effective level — computed here from the heads' waits — is the lowest
   among classes with eligible tasks.
4. Caps. a. While a tenant is capped the decisions are exactly those of a
   scheduler that never saw its tasks, and it is never served. b. It keeps
   its place: its tags do not move; without aging and with time frozen, each
   decision takes one task out of the uncapped order and moves no one else,
   so its tasks only move up; uncapped, the task at position p is the p-th
   dispatched.
5. BudgetLedger: under any interleaving of reserve/settle, ``spent + reserved
   ≤ budget``, a reservation is granted iff it fits, and each settles once.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from apps.scheduler.budget import BudgetLedger
from apps.scheduler.policy import CLASSES, Entry, FairScheduler

REPO = Path(__file__).resolve().parents[2]
AGING = 5.0
EPS = 1e-9

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

tenants = st.sampled_from(["t0", "t1", "t2", "t3"])
classes = st.sampled_from(CLASSES)
costs = st.integers(1, 50)
weights = st.sampled_from([0.5, 1.0, 2.0, 3.0])
ranks = st.integers(0, 3)
# Steps of the clock: zero (several events at one instant) up to more than one aging period.
time_steps = st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.5, 7.0])


# --------------------------------------------------------------------- oracle


@dataclass
class RefTask:
    task_id: str
    tenant: str
    base: int
    cost: float
    rank: float
    enqueued_at: float
    seq: int


@dataclass
class ReferenceScheduler:
    """docs/scheduling.md's rules, applied by rescanning every queued task at each step."""

    aging: float
    class_weights: tuple[float, ...] = (16.0, 4.0, 1.0)
    tasks: dict[str, RefTask] = field(default_factory=dict)
    weight: dict[str, float] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)  # tenants by first appearance
    tags: dict[tuple[str, int], float] = field(default_factory=dict)  # per flow (tenant, class)
    class_virtual: list[float] = field(default_factory=lambda: [0.0] * len(CLASSES))
    offset: list[float] = field(default_factory=lambda: [0.0] * len(CLASSES))
    level: list[int] = field(default_factory=lambda: list(range(len(CLASSES))))
    level_virtual: list[float] = field(default_factory=lambda: [0.0] * len(CLASSES))
    clock: float = -math.inf
    seq: int = 0

    def flow(self, tenant: str, base: int) -> list[RefTask]:
        return [t for t in self.tasks.values() if t.tenant == tenant and t.base == base]

    def head(self, tenant: str, base: int) -> RefTask:
        return min(self.flow(tenant, base), key=lambda t: (-t.rank, t.enqueued_at, t.seq))

    def virtual(self, base: int) -> float:
        return max(self.class_virtual[base], self.level_virtual[self.level[base]] - self.offset[base])

    def register(self, tenant: str, weight: float) -> None:
        self.weight[tenant] = weight
        self.order.setdefault(tenant, len(self.order))

    def add(self, task_id, tenant, weight, priority_class, cost, now, rank=0, enqueued_at=None) -> bool:
        if task_id in self.tasks:
            return False
        self.clock = max(self.clock, now)
        self.register(tenant, weight)
        base = CLASSES.index(priority_class)
        if not self.flow(tenant, base):
            self.tags[tenant, base] = max(self.tags.get((tenant, base), 0.0), self.virtual(base))
        arrived = self.clock if enqueued_at is None else enqueued_at
        self.tasks[task_id] = RefTask(task_id, tenant, base, cost, rank, arrived, self.seq)
        self.seq += 1
        return True

    def next(self, now: float, capped=frozenset()) -> tuple[str, str, float] | None:
        self.clock = max(self.clock, now)
        flows = {b: sorted({t.tenant for t in self.tasks.values() if t.base == b and t.tenant not in capped})
                 for b in range(len(CLASSES))}
        for b, members in flows.items():
            if members:
                oldest = min(self.head(tenant, b).enqueued_at for tenant in members)
                level = b - effective_steps(b, oldest, self.clock, self.aging)
                if level != self.level[b]:
                    self.offset[b] = self.level_virtual[level] - self.virtual(b)
                    self.level[b] = level
        live = [b for b, members in flows.items() if members]
        if not live:
            return None
        top = min(self.level[b] for b in live)
        best = None
        for b in live:
            if self.level[b] == top:
                tenant = min(flows[b], key=lambda n: (self.tags[n, b], self.order[n]))
                key = (self.tags[tenant, b] + self.offset[b], b, self.order[tenant])
                best = min(best, (key, tenant, b)) if best else (key, tenant, b)
        _, tenant, b = best
        task = self.head(tenant, b)
        del self.tasks[task.task_id]
        start = self.tags[tenant, b]
        self.class_virtual[b] = max(self.class_virtual[b], start)
        self.level_virtual[top] = max(self.level_virtual[top], start + self.offset[b])
        self.tags[tenant, b] = start + task.cost / (self.weight[tenant] * self.class_weights[b])
        return task.task_id, CLASSES[top], start

    def remove(self, task_id: str) -> bool:
        return self.tasks.pop(task_id, None) is not None

    def complete(self, tenant: str, priority_class: str, estimated: float, actual: float) -> None:
        if tenant in self.order:
            base = CLASSES.index(priority_class)
            self.tags[tenant, base] = (self.tags.get((tenant, base), 0.0)
                                       + (actual - estimated) / (self.weight[tenant] * self.class_weights[base]))

    def set_weight(self, tenant: str, weight: float) -> None:
        self.register(tenant, weight)

    def order_from(self, now: float, capped=frozenset(), k: int | None = None) -> list[tuple[str, str, float]]:
        """What repeated ``next`` would return: by doing it on a copy."""
        twin = copy.deepcopy(self)
        out = []
        while k is None or len(out) < k:
            decision = twin.next(now, capped)
            if decision is None:
                break
            out.append(decision)
        return out


def decision(entry: Entry | None) -> tuple[str, str, float] | None:
    return None if entry is None else (entry.task_id, entry.effective_class, entry.start_tag)


def effective_steps(base: int, enqueued_at: float, clock: float, aging: float = AGING) -> int:
    """Levels a class rises when its oldest eligible head arrived at ``enqueued_at`` (documented rule)."""
    steps = 0
    while steps < base and enqueued_at + (steps + 1) * aging <= clock:
        steps += 1
    return steps


# --------------------------------------------------------------- operations

add_op = st.tuples(st.just("add"), tenants, classes, costs, ranks, time_steps, st.sampled_from([0.0, 0.0, 4.0, 12.0]))
next_op = st.tuples(st.just("next"), time_steps, st.frozensets(tenants, max_size=2))
remove_op = st.tuples(st.just("remove"), st.integers(0, 80))
complete_op = st.tuples(st.just("complete"), st.integers(0, 80), st.integers(0, 60))
weight_op = st.tuples(st.just("weight"), tenants, weights)
peek_op = st.tuples(st.just("peek"), time_steps, st.frozensets(tenants, max_size=2), st.integers(1, 6))
position_op = st.tuples(st.just("position"), st.integers(0, 80))
any_ops = st.lists(
    st.one_of(add_op, add_op, next_op, next_op, remove_op, complete_op, weight_op, peek_op, position_op),
    min_size=15,
    max_size=80,
)


def run_ops(ops, scheduler: FairScheduler, reference: ReferenceScheduler | None = None, on_next=None) -> dict:
    """Apply ``ops`` to ``scheduler`` (and ``reference``, comparing every answer); returns the run's record."""
    now = 0.0
    added: list[str] = []
    removed: list[str] = []
    dispatched: list[Entry] = []
    weight = {name: 1.0 for name in ["t0", "t1", "t2", "t3"]}
    for op in ops:
        kind = op[0]
        if kind == "add":
            _, tenant, priority_class, cost, rank, step, backdate = op
            now += step
            task_id = f"task{len(added)}"
            added.append(task_id)
            args = (task_id, tenant, weight[tenant], priority_class, cost, now, rank, now - backdate)
            got = scheduler.add(*args)
            if reference is not None:
                assert got == reference.add(*args)
        elif kind == "tick":
            now += op[1]
        elif kind == "next":
            _, step, capped = op
            now += step
            entry = scheduler.next(now, capped)
            if reference is not None:
                assert decision(entry) == reference.next(now, capped)
            if entry is not None:
                assert entry.tenant not in capped
                dispatched.append(entry)
            if on_next is not None:
                on_next(now, capped, entry)
        elif kind == "remove":
            if added:
                task_id = added[op[1] % len(added)]
                got = scheduler.remove(task_id)
                if got:
                    removed.append(task_id)
                if reference is not None:
                    assert got == reference.remove(task_id)
        elif kind == "complete":
            if dispatched:
                entry = dispatched[op[1] % len(dispatched)]
                args = (entry.tenant, entry.priority_class, entry.estimated_cost, op[2])
                scheduler.complete(*args)
                if reference is not None:
                    reference.complete(*args)
        elif kind == "weight":
            _, tenant, new_weight = op
            weight[tenant] = new_weight
            scheduler.set_weight(tenant, new_weight)
            if reference is not None:
                reference.set_weight(tenant, new_weight)
        elif kind == "peek":
            _, step, capped, k = op
            now += step
            got = [decision(e) for e in scheduler.peek_order(now, capped, k)]
            if reference is not None:
                assert got == reference.order_from(now, capped, k)
        elif kind == "position":
            if added:
                task_id = added[op[1] % len(added)]
                got = scheduler.position(task_id, now)
                if reference is not None:
                    order = [d[0] for d in reference.order_from(now)]
                    assert got == (order.index(task_id) + 1 if task_id in order else None)
        if reference is not None:
            assert len(scheduler) == len(reference.tasks)
    return {"now": now, "added": added, "removed": removed, "dispatched": dispatched}


# ------------------------------------------------------------------- purity


def test_policy_and_budget_import_only_the_standard_library():
    """The policy must load in a process with no Django (the Principles); checked in a fresh interpreter."""
    script = (
        "import sys; before = set(sys.modules); "
        "import apps.scheduler.policy, apps.scheduler.budget; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "bad = sorted(new - set(sys.stdlib_module_names) - {'apps'}); "
        "assert 'django' not in sys.modules, 'django imported'; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------ 0. agreement


@PROPERTY
@given(any_ops)
def test_scheduler_agrees_with_the_reference_rules(ops):
    run_ops(ops, FairScheduler(aging_seconds=AGING), ReferenceScheduler(AGING))


# ---------------------------------------------------------- 1. starvation


@PROPERTY
@given(any_ops)
def test_every_queued_task_is_dispatched_exactly_once(ops):
    scheduler = FairScheduler(aging_seconds=AGING)
    record = run_ops(ops, scheduler)
    drained = []
    while (entry := scheduler.next(record["now"])) is not None:
        drained.append(entry.task_id)
    served = [e.task_id for e in record["dispatched"]] + drained
    assert len(served) == len(set(served)), "a task was dispatched twice"
    assert len(scheduler) == 0
    assert set(served).isdisjoint(record["removed"])
    assert set(served) | set(record["removed"]) == set(record["added"])


@PROPERTY
@given(
    others=st.lists(
        st.tuples(st.sampled_from(["t1", "t2", "t3"]), st.booleans(), costs, time_steps), min_size=5, max_size=40
    ),
    own=st.lists(st.tuples(st.booleans(), costs), max_size=4),
    x_class=st.sampled_from(CLASSES[1:]),
    x_cost=costs,
    x_at=st.integers(0, 40),
    weight_of=st.fixed_dictionaries({name: weights for name in ["X", "t1", "t2", "t3"]}),
    decide_every=st.integers(1, 3),
)
def test_an_aged_task_waits_for_about_one_task_per_other_flow(
    others, own, x_class, x_cost, x_at, weight_of, decide_every
):
    """Property 1c. Other tasks are interactive or of x's class (a boolean picks which)."""
    scheduler = FairScheduler(aging_seconds=AGING)
    now = 0.0
    max_cost: dict[tuple[str, str], float] = {}
    served_before_x: dict[tuple[str, str], float] = {}  # flow -> work dispatched while x waited at the top
    x_enqueued: float | None = None
    x_in_top = x_done = False

    def arrive(task_id: str, tenant: str, in_x_class: bool, cost: int, rank: int) -> None:
        priority_class = x_class if in_x_class else CLASSES[0]
        scheduler.add(task_id, tenant, weight_of[tenant], priority_class, cost, now, rank=rank)
        max_cost[tenant, priority_class] = max(max_cost.get((tenant, priority_class), 0.0), cost)

    def decide() -> Entry | None:
        nonlocal x_in_top, x_done
        base = CLASSES.index(x_class)
        x_in_top = x_in_top or (x_enqueued is not None and not x_done
                                and effective_steps(base, x_enqueued, now) == base)
        entry = scheduler.next(now)
        if entry is None:
            return None
        if x_in_top and not x_done:
            assert entry.effective_class == CLASSES[0]
            if entry.task_id != "x":
                assert (entry.tenant, entry.priority_class) != ("X", x_class)  # x heads its flow
                flow = (entry.tenant, entry.priority_class)
                served_before_x[flow] = served_before_x.get(flow, 0.0) + entry.estimated_cost
        x_done = x_done or entry.task_id == "x"
        return entry

    for index, (tenant, in_x_class, cost, step) in enumerate(others):
        now += step
        if index == x_at:
            x_enqueued = now
            arrive("x", "X", True, x_cost, rank=9)  # the highest rank: x heads its flow
            for n, (own_in_x_class, own_cost) in enumerate(own):
                arrive(f"own{n}", "X", own_in_x_class, own_cost, rank=0)
        arrive(f"o{index}", tenant, in_x_class, cost, rank=0)
        if index % decide_every == 0:
            decide()
    if x_enqueued is None:
        x_enqueued = now
        arrive("x", "X", True, x_cost, rank=9)
    while not x_done:
        now += 1.0
        assert decide() is not None, "x was never dispatched"
    def w(tenant: str, priority_class: str) -> float:
        return weight_of[tenant] * scheduler.class_weights[CLASSES.index(priority_class)]

    bound_x = max_cost["X", x_class] / w("X", x_class)
    for (tenant, priority_class), work in served_before_x.items():
        assert work <= w(tenant, priority_class) * bound_x + max_cost[tenant, priority_class] + EPS, (tenant, work)


# ----------------------------------------------------------- 2. fair share


@PROPERTY
@given(
    arrivals=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), costs, st.integers(1, 60)), min_size=10, max_size=80),
    decide=st.lists(st.booleans(), min_size=10, max_size=120),
    weight_of=st.fixed_dictionaries({"a": st.integers(1, 4), "b": st.integers(1, 4), "c": st.integers(1, 4)}),
    priority_class=classes,
)
def test_backlogged_flows_share_in_proportion_to_weight(arrivals, decide, weight_of, priority_class):
    """Property 2 for tenants a and b (c is background traffic): one class, each task corrected at completion.

    ``decide`` interleaves arrivals (False) and decisions (True); the queue is
    drained at the end. Each arrival carries its estimate and its actual cost.
    """
    scheduler = FairScheduler(aging_seconds=math.inf)
    actual_of: dict[str, int] = {}
    queued = {"a": 0, "b": 0, "c": 0}
    max_actual = {"a": 0, "b": 0, "c": 0}
    pending = list(arrivals)
    # For each stretch in which a and b stay backlogged: D = W_a/w_a − W_b/w_b
    # before its first decision and after each of its decisions. Every
    # interval inside the stretch is a difference of two of these points.
    stretches: list[list[float]] = []
    current: list[float] | None = None
    difference = 0.0
    for step, decide_now in enumerate(decide + [True] * len(arrivals)):
        if not decide_now and pending:
            tenant, cost, actual = pending.pop(0)
            actual_of[f"{tenant}{step}"] = actual
            scheduler.add(f"{tenant}{step}", tenant, weight_of[tenant], priority_class, cost, 0.0)
            queued[tenant] += 1
            continue
        backlogged_before = queued["a"] > 0 and queued["b"] > 0
        entry = scheduler.next(0.0)
        if entry is None:
            continue
        actual = actual_of[entry.task_id]
        scheduler.complete(entry.tenant, entry.priority_class, entry.estimated_cost, actual)
        queued[entry.tenant] -= 1
        max_actual[entry.tenant] = max(max_actual[entry.tenant], actual)
        if backlogged_before and current is None:
            current = [difference]
            stretches.append(current)
        if entry.tenant != "c":
            difference += (1 if entry.tenant == "a" else -1) * actual / weight_of[entry.tenant]
        if current is not None:
            current.append(difference)
            if not (queued["a"] > 0 and queued["b"] > 0):
                current = None
    bound = max_actual["a"] / weight_of["a"] + max_actual["b"] / weight_of["b"]
    for points in stretches:
        assert max(points) - min(points) <= bound + EPS, (points, bound)


# ---------------------------------------------------------- 3. class order


@PROPERTY
@given(any_ops, st.sampled_from([AGING, math.inf]))
def test_the_lowest_effective_class_goes_first(ops, aging):
    """Property 3 (and 1b with aging on), with effective classes computed here from what was queued."""
    scheduler = FairScheduler(aging_seconds=aging)
    queued: dict[str, tuple[str, int, float, int, int]] = {}  # id -> (tenant, class, enqueued_at, rank, arrival no.)
    arrivals = 0
    clock = -math.inf
    original_add, original_remove = scheduler.add, scheduler.remove

    def add(task_id, tenant, weight, priority_class, cost, now, rank=0, enqueued_at=None):
        nonlocal clock, arrivals
        clock = max(clock, now)
        added = original_add(task_id, tenant, weight, priority_class, cost, now, rank, enqueued_at)
        if added:
            queued[task_id] = (tenant, CLASSES.index(priority_class), enqueued_at, rank, arrivals)
            arrivals += 1
        return added

    def remove(task_id):
        queued.pop(task_id, None)
        return original_remove(task_id)

    def check(now, capped, entry):
        nonlocal clock
        clock = max(clock, now)
        heads: dict[tuple[str, int], str] = {}
        for task_id, (tenant, base, at, rank, n) in queued.items():
            if tenant in capped:
                continue
            best = heads.get((tenant, base))
            if best is None or (-rank, at, n) < (-queued[best][3], queued[best][2], queued[best][4]):
                heads[tenant, base] = task_id
        if entry is None:
            assert not heads
            return
        level = {}
        for base in range(len(CLASSES)):
            waits = [queued[h][2] for (tenant, b), h in heads.items() if b == base]
            if waits:
                level[base] = base - effective_steps(base, min(waits), clock, aging)
        assert CLASSES.index(entry.effective_class) == min(level.values())
        assert level[CLASSES.index(entry.priority_class)] == min(level.values())
        assert heads[entry.tenant, CLASSES.index(entry.priority_class)] == entry.task_id
        del queued[entry.task_id]

    scheduler.add, scheduler.remove = add, remove  # record what the scheduler is given, then delegate
    run_ops(ops, scheduler, on_next=check)


# ------------------------------------------------------------------ 4. caps


def _without(ops, tenant: str) -> list:
    """``ops`` minus the tenant's arrivals; the clock still moves as it did."""
    return [("tick", op[5]) if op[0] == "add" and op[1] == tenant else op for op in ops]


@PROPERTY
@given(any_ops.filter(lambda ops: any(op[0] == "add" and op[1] == "t0" for op in ops)))
def test_a_capped_tenant_is_invisible_to_the_others(ops):
    """Property 4a: with t0 capped at every decision, the decisions equal those of a scheduler without t0.

    Removals, completions and position queries are dropped: they name tasks by
    index, which differs between the two runs.
    """
    ops = [("next", op[1], op[2] | {"t0"}) if op[0] == "next" else op
           for op in ops if op[0] in ("add", "next", "weight", "peek")]
    with_t0: list = []
    without_t0: list = []
    run_ops(ops, FairScheduler(aging_seconds=AGING), on_next=lambda now, capped, e: with_t0.append(e))
    run_ops(_without(ops, "t0"), FairScheduler(aging_seconds=AGING),
            on_next=lambda now, capped, e: without_t0.append(e))

    def describe(entries):  # task ids are positional, so compare what the tasks were
        return [None if e is None else (e.tenant, e.priority_class, e.effective_class, e.estimated_cost, e.rank,
                                        e.enqueued_at, e.start_tag) for e in entries]

    assert describe(with_t0) == describe(without_t0)
    assert all(e is None or e.tenant != "t0" for e in with_t0)


@PROPERTY
@given(
    tasks=st.lists(
        st.tuples(tenants, classes, costs, ranks, st.sampled_from([0.0, 4.0, 9.0])), min_size=3, max_size=30
    ),
    weight_of=st.fixed_dictionaries({name: weights for name in ["t0", "t1", "t2", "t3"]}),
    capped_decisions=st.integers(0, 30),
    aging=st.sampled_from([AGING, math.inf]),
)
def test_a_capped_tenant_keeps_its_place(tasks, weight_of, capped_decisions, aging):
    """Property 4b: time frozen, no arrivals; t0 capped for a while, then not."""
    now = 20.0
    scheduler = FairScheduler(aging_seconds=aging)
    for n, (tenant, priority_class, cost, rank, waited) in enumerate(tasks):
        scheduler.add(f"task{n}", tenant, weight_of[tenant], priority_class, cost, now, rank, now - waited)
    tags = [scheduler.tag("t0", c) for c in CLASSES]
    for _ in range(capped_decisions):
        before = {e.task_id: p for p, e in enumerate(scheduler.peek_order(now), start=1)}
        entry = scheduler.next(now, {"t0"})
        if entry is None:
            assert all(tasks[int(tid.removeprefix("task"))][0] == "t0" for tid in before)
            break
        assert entry.tenant != "t0"
        if aging == math.inf:  # nobody overtakes anybody; those behind the dispatched task move up one
            gone = before.pop(entry.task_id)
            for tid, position in before.items():
                assert scheduler.position(tid, now) == (position - 1 if position > gone else position)
    assert [scheduler.tag("t0", c) for c in CLASSES] == tags  # passing over charges nothing
    order = [e.task_id for e in scheduler.peek_order(now)]
    for tid in order:
        assert scheduler.position(tid, now) == order.index(tid) + 1
    served = []
    while (entry := scheduler.next(now)) is not None:
        served.append(entry.task_id)
    assert served == order  # uncapped, the task at position p is the p-th dispatched


# ---------------------------------------------------------------- 5. budget


class BudgetMachine(RuleBasedStateMachine):
    """Any interleaving of reserve and settle, repeated settles included (completions arrive at least once)."""

    reservations = Bundle("reservations")
    settled = Bundle("settled")

    def __init__(self) -> None:
        super().__init__()
        self.ledger = BudgetLedger(budget=1000)
        self.open: dict[int, int] = {}
        self.spent = 0
        self.overrun = 0  # used beyond reservations: charged all the same
        self.keys = 0

    @rule(target=reservations, worst_case=st.integers(0, 400))
    def reserve(self, worst_case):
        key, self.keys = self.keys, self.keys + 1
        fits = self.ledger.spent + self.ledger.reserved + worst_case <= self.ledger.budget
        granted = self.ledger.reserve(key, worst_case)
        assert granted == fits
        if granted:
            self.open[key] = worst_case
        return key

    @rule(target=settled, key=consumes(reservations), actual=st.integers(0, 500))
    def settle(self, key, actual):
        result = self.ledger.settle(key, actual)
        if key in self.open:
            worst_case = self.open.pop(key)
            assert result == worst_case - actual
            self.spent += actual  # in full, above the reservation too
            self.overrun += max(actual - worst_case, 0)
        else:
            assert result is None  # it was refused: there is nothing to settle
        return key

    @rule(key=settled, actual=st.integers(0, 500))
    def settle_again(self, key, actual):
        before = (self.ledger.spent, self.ledger.reserved)
        assert self.ledger.settle(key, actual) is None
        assert (self.ledger.spent, self.ledger.reserved) == before

    @invariant()
    def over_budget_only_by_what_was_used_beyond_reservations(self):
        assert self.ledger.spent + self.ledger.reserved <= self.ledger.budget + self.overrun
        assert self.ledger.reserved == sum(self.open.values())
        assert self.ledger.spent == self.spent
        assert self.ledger.overrun == self.overrun
        assert self.ledger.available == max(self.ledger.budget - self.spent - self.ledger.reserved, 0)


BudgetMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
test_budget_ledger = BudgetMachine.TestCase
