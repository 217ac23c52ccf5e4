"""The scheduling policy: which queued task of one model runs next.

Pure Python, standard library only: no Django, no I/O, no clock of its own
(calls that depend on time take ``now``). That keeps the rules testable with
property tests and a discrete-event simulation (``bench/simulate.py``), and
lets the dispatcher keep one ``FairScheduler`` per model in memory, rebuilt
from the database when it starts. docs/scheduling.md has the rules, the
bounds and their proofs in prose; this is the summary.

Rules
-----
A *flow* is one tenant's queued tasks of one priority class.

1. **Fair share inside a class** — start-time fair queuing over the class's
   flows. Each flow has a virtual tag. Dispatching a task returns the tag as
   its *start tag* and advances it by ``estimated_cost / (weight ×
   class_weight)``; ``complete`` later moves it by the difference between
   actual and estimated cost, scaled alike. The flow with the smallest tag
   is served, so a tenant that floods a class waits behind its own work. A
   flow that becomes non-empty has its tag lifted to the class's virtual
   time (the largest start tag dispatched in it or at its level): being
   idle earns no credit.
2. **Inside a flow**: ``rank`` descending (the critical-path hint, e.g. the
   longest chain of descendants in the task's workflow), then arrival. The
   first task in this order is the flow's *head*.
3. **Classes and aging.** Classes are ``interactive`` > ``normal`` >
   ``batch``. A class competes one level higher for every ``aging_seconds``
   its oldest eligible head has waited (``level = max(0, base −
   ⌊waited / aging_seconds⌋)``), so a batch head that has waited
   ``2 × aging_seconds`` makes the batch class compete as interactive. The
   lowest level with an eligible task is served first. Classes that age
   into one level compete there by tag, each class's tags shifted so that
   its virtual time meets the level's when it arrives (no credit, no
   penalty for time spent elsewhere). There the class weights (default
   16 : 4 : 1) matter: aging promises the lower classes progress, not
   parity — under overload that outlasts the aging period every class
   reaches the top, and equal standing there would leave interactive
   tenants a share barely above their demand. Inside one class the class
   weight scales every tag alike and changes nothing.

   Aging moves whole classes, never single tasks: if it moved tasks, a
   flooder's old backlog would climb above a quiet tenant's fresh tasks of
   the same class, and inside a class only the fair-share tag may decide.
4. **Capped tenants** (at their running-task cap, named by the caller at each
   decision) are passed over without changing their tags — they keep their
   place — and their tasks do not age their classes.

Cost
----
Per class: a heap of its flows by tag and one by head arrival; per flow, a
heap of its tasks. ``add``, ``remove``, ``complete`` and ``next`` are
O(log n) amortized. A capped tenant's flows are taken out of the class
heaps when it first appears in ``capped`` and put back when it leaves it
(O(log T) each), so the capped ones never have to be stepped over: they
keep the smallest tags, and skipping them at each decision would cost
O(k log T) for k capped tenants. That is why ``capped`` is a set, compared
with the previous call's, and not a predicate. Stale heap entries are
skipped when met and compacted once they outnumber live ones.
``peek_order`` and ``position`` replay decisions on a copy: O(n + p log n)
for p decisions — for status displays, not for dispatch.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Hashable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from apps.core import priorities

CLASSES: tuple[str, ...] = priorities.CLASSES
"""Priority classes, highest first; a class's index is its level (0 = top)."""

_LEVELS = len(CLASSES)
_LEVEL_OF = {name: level for level, name in enumerate(CLASSES)}

Capped = AbstractSet[str]
"""Names of the tenants at their running cap (a set, frozenset or dict keys view)."""

# A heap is rebuilt from its live entries once its stale entries outnumber
# them by this factor (plus a floor, so small heaps are never rebuilt): that
# bounds memory while keeping the rebuild's O(size) cost amortized O(1).
_COMPACT_FACTOR = 2
_COMPACT_FLOOR = 64


@dataclass(frozen=True, slots=True)
class Entry:
    """A task handed out by ``next`` (or listed by ``peek_order``).

    ``start_tag`` is its flow's tag when it was chosen (in its class's
    units); ``effective_class`` the class level it competed at.
    """

    task_id: Hashable
    tenant: str
    priority_class: str
    effective_class: str
    estimated_cost: float
    rank: float
    enqueued_at: float
    start_tag: float


class _Task:
    __slots__ = ("task_id", "flow", "cost", "rank", "enqueued_at", "seq", "alive")

    def __init__(self, task_id: Hashable, flow: _Flow, cost: float, rank: float, enqueued_at: float, seq: int) -> None:
        self.task_id = task_id
        self.flow = flow
        self.cost = cost
        self.rank = rank
        self.enqueued_at = enqueued_at
        self.seq = seq  # arrival order at equal enqueued_at, and a unique heap tie-breaker
        self.alive = True  # False once dispatched or removed: its heap entry is then stale


class _Flow:
    """One tenant's tasks of one class."""

    __slots__ = ("tenant", "base", "tag", "tasks", "live", "tag_version", "age_version")

    def __init__(self, tenant: _Tenant, base: int) -> None:
        self.tenant = tenant
        self.base = base
        self.tag = 0.0
        self.tasks: list[tuple[float, float, int, _Task]] = []  # heap by (-rank, enqueued_at, seq); top kept live
        self.live = 0
        # Bumped when this flow's entry in its class's tag (age) heap becomes
        # outdated: tag (head) changed, or the flow emptied.
        self.tag_version = 0
        self.age_version = 0

    @property
    def head(self) -> _Task:
        return self.tasks[0][3]


class _Tenant:
    __slots__ = ("name", "seq", "weight", "flows", "capped")

    def __init__(self, name: str, seq: int, weight: float, capped: bool) -> None:
        self.name = name
        self.seq = seq  # tie-breaker between equal tags: order of first appearance
        self.weight = weight
        self.flows = [_Flow(self, base) for base in range(_LEVELS)]
        self.capped = capped  # its flows are out of the class heaps until it is not


class _Class:
    __slots__ = ("base", "virtual", "offset", "level", "by_tag", "by_age", "flows")

    def __init__(self, base: int) -> None:
        self.base = base
        self.virtual = 0.0  # largest start tag dispatched in this class (see FairScheduler._virtual)
        # tag + offset compares with other classes at the same level; set
        # when the class arrives at a level so its virtual time meets the level's.
        self.offset = 0.0
        self.level = base  # as of the last decision
        self.by_tag: list[tuple[float, int, int, _Flow]] = []  # (tag, tenant seq, tag_version, flow)
        self.by_age: list[tuple[float, int, int, _Flow]] = []  # (head enqueued_at, head seq, age_version, flow)
        self.flows = 0  # non-empty flows of uncapped tenants: those in the heaps


def _level(priority_class: str) -> int:
    try:
        return _LEVEL_OF[priority_class]
    except KeyError:
        raise ValueError(f"unknown priority class {priority_class!r}; expected one of {CLASSES}") from None


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


class FairScheduler:
    """One model's ready queue in policy order (see the module docstring).

    Time is whatever clock the caller uses consistently, in seconds; if
    ``now`` goes backwards the latest time seen is used.
    """

    def __init__(
        self,
        aging_seconds: float = 300.0,
        class_weights: tuple[float, ...] = (16.0, 4.0, 1.0),
        idle_credit: float = 0.0,
    ) -> None:
        """``aging_seconds``: the wait that lifts a class one level (``math.inf`` disables aging).

        ``class_weights`` (one per class, highest first) multiply tenants'
        weights; they only matter between classes that aging has brought to
        the same level, since inside a class they scale every tag alike.

        ``idle_credit`` (cost units, e.g. tokens, at weight 1) is how far
        behind its class's virtual time a flow that becomes non-empty may
        start, if it had fallen that far behind while idle: a tenant that used
        less than its share lately gets up to that much work served ahead of
        the backlogged ones (a burst starts at once instead of sharing the freed
        slots), and no more, however long it was idle. 0: plain SFQ.
        """
        if not aging_seconds > 0:
            raise ValueError(f"aging_seconds must be positive, got {aging_seconds!r}")
        if len(class_weights) != _LEVELS:
            raise ValueError(f"class_weights needs one weight per class {CLASSES}")
        self.aging_seconds = float(aging_seconds)
        self.class_weights = tuple(_positive("class weight", w) for w in class_weights)
        idle_credit = float(idle_credit)
        if not (idle_credit >= 0 and math.isfinite(idle_credit)):
            raise ValueError(f"idle_credit must be a non-negative finite number, got {idle_credit!r}")
        self.idle_credit = idle_credit
        self._tasks: dict[Hashable, _Task] = {}
        self._tenants: dict[str, _Tenant] = {}
        self._tenant_seq = itertools.count()
        self._task_seq = itertools.count()
        self._classes = [_Class(base) for base in range(_LEVELS)]
        self._level_virtual = [0.0] * _LEVELS  # largest aligned start tag dispatched at each level
        self._capped: frozenset[str] = frozenset()  # as of the last decision; may name unknown tenants
        self._clock = -math.inf

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def tag(self, tenant: str, priority_class: str) -> float:
        """The tenant's current tag in a class (0.0 for a tenant never seen)."""
        state = self._tenants.get(tenant)
        return state.flows[_level(priority_class)].tag if state else 0.0

    def virtual_time(self, priority_class: str) -> float:
        """The class's virtual time, in its own tag units (see ``_virtual``)."""
        return self._virtual(self._classes[_level(priority_class)])

    # ---------------------------------------------------------------- mutations

    def set_weight(self, tenant: str, weight: float) -> None:
        """Change a tenant's weight; it applies to the tags charged from now on."""
        self._tenant(tenant, _positive("weight", weight))

    def add(
        self,
        task_id: Hashable,
        tenant: str,
        weight: float,
        priority_class: str,
        estimated_cost: float,
        now: float,
        rank: float = 0,
        enqueued_at: float | None = None,
    ) -> bool:
        """Queue a task; returns False (and changes nothing) if it is already queued.

        Idempotent because the dispatcher may learn of one task twice (from
        its rebuild and from a submission notice). ``weight`` updates the
        tenant's weight. ``enqueued_at`` (default ``now``) is when the task
        became ready: a rebuilt or re-queued task keeps the wait it has
        accumulated, which both ages its class and orders it among its
        flow's equal-rank tasks.
        """
        if task_id in self._tasks:
            return False
        base = _level(priority_class)
        cost = _positive("estimated_cost", estimated_cost)
        rank = float(rank)
        if not math.isfinite(rank):
            raise ValueError(f"rank must be finite, got {rank!r}")
        self._tick(now)
        flow = self._tenant(tenant, _positive("weight", weight)).flows[base]
        arrived = self._clock if enqueued_at is None else float(enqueued_at)
        task = _Task(task_id, flow, cost, rank, arrived, next(self._task_seq))
        self._tasks[task_id] = task
        item = (-rank, arrived, task.seq, task)
        if flow.live == 0:
            cls = self._classes[base]
            # Idleness earns at most idle_credit (scaled like the flow's tags), never more.
            credit = self.idle_credit / (flow.tenant.weight * self.class_weights[base])
            flow.tag = max(flow.tag, self._virtual(cls) - credit)
            flow.live = 1
            flow.tasks = [item]
            if not flow.tenant.capped:
                cls.flows += 1
                self._publish_tag(flow)
                self._publish_age(flow)
        else:
            flow.live += 1
            heapq.heappush(flow.tasks, item)
            if flow.head is task and not flow.tenant.capped:
                self._publish_age(flow)
        return True

    def remove(self, task_id: Hashable) -> bool:
        """Drop a queued task (cancelled, or taken elsewhere); False if it is not queued.

        Nothing is charged: tags move only when a task is dispatched.
        """
        task = self._tasks.pop(task_id, None)
        if task is None:
            return False
        flow = task.flow
        was_head = flow.head is task
        task.alive = False
        self._shrink(flow, head_changed=was_head)
        return True

    def next(self, now: float, capped: Capped = frozenset()) -> Entry | None:
        """Pop the task to run next, passing over ``capped`` tenants; None if none is eligible.

        ``capped`` names the tenants at their running cap now; a tenant in it
        keeps its tags and its place and is served again once a later call
        leaves it out. To fill n free slots call this up to n times, adding a
        tenant to ``capped`` as soon as it reaches its cap.
        """
        self._tick(now)
        self._set_capped(capped)
        eligible: list[_Class] = []
        for cls in self._classes:
            if not cls.flows:
                continue
            oldest = self._top(cls.by_age, tags=False)
            level = cls.base - self._steps(oldest.head.enqueued_at, cls.base)
            if level != cls.level:
                # Arriving at another level: line the class's virtual time up with the level's.
                cls.offset = self._level_virtual[level] - self._virtual(cls)
                cls.level = level
            eligible.append(cls)
        if not eligible:
            return None
        top = min(cls.level for cls in eligible)
        best: tuple[tuple[float, int, int], _Class, _Flow] | None = None
        for cls in eligible:
            if cls.level != top:
                continue
            flow = self._top(cls.by_tag, tags=True)
            key = (flow.tag + cls.offset, cls.base, flow.tenant.seq)
            if best is None or key < best[0]:
                best = (key, cls, flow)
        assert best is not None  # eligible is not empty, so some class sits at the top level
        _, cls, flow = best
        return self._dispatch(cls, flow)

    def complete(self, tenant: str, priority_class: str, estimated_cost: float, actual_cost: float) -> None:
        """Correct the tag charged for a finished task of ``priority_class`` to its actual cost.

        The tenant's tag in that class moves by ``(actual − estimated) /
        (weight × class weight)`` (current weight). A tenant never seen (a task dispatched
        before the dispatcher restarted) is ignored: its fresh state carries
        no charge to correct.
        """
        base = _level(priority_class)
        estimated = _positive("estimated_cost", estimated_cost)
        actual = float(actual_cost)
        if not (actual >= 0 and math.isfinite(actual)):
            raise ValueError(f"actual_cost must be a non-negative finite number, got {actual_cost!r}")
        state = self._tenants.get(tenant)
        if state is None:
            return
        flow = state.flows[base]
        flow.tag += (actual - estimated) / (state.weight * self.class_weights[base])
        if flow.live and not state.capped:
            self._publish_tag(flow)

    # ------------------------------------------------------------ order preview

    def peek_order(self, now: float, capped: Capped = frozenset(), k: int | None = None) -> list[Entry]:
        """The first ``k`` (default all) tasks ``next`` would return, in order, if nothing else happened.

        Changes nothing: the decisions are made on a copy, which for a given ``k``
        holds only each flow's first ``k`` tasks (k decisions can take no others):
        O(F·k log k + k log F) for F flows, whatever the queue's length (the
        dispatcher peeks at a crowded model's first waiting tasks every round).
        O(n + k log n) without ``k``.
        """
        copy = self._copy(first=k)
        order: list[Entry] = []
        while k is None or len(order) < k:
            entry = copy.next(now, capped)
            if entry is None:
                break
            order.append(entry)
        return order

    def position(self, task_id: Hashable, now: float) -> int | None:
        """1-based place of a queued task in the order ``next`` would follow with no tenant capped.

        None if the task is not queued. O(n + p log n) at position p, for
        status displays. Caps are ignored: a cap holds back only its own
        tenant, and which tenants will be capped when this task's turn comes
        is unknown.
        """
        if task_id not in self._tasks:
            return None
        copy = self._copy()
        place = 1
        while True:
            entry = copy.next(now, frozenset())
            assert entry is not None  # the task is queued, so the order reaches it
            if entry.task_id == task_id:
                return place
            place += 1

    # ---------------------------------------------------------------- internals

    def _tick(self, now: float) -> None:
        if now > self._clock:
            self._clock = float(now)

    def _tenant(self, name: str, weight: float) -> _Tenant:
        state = self._tenants.get(name)
        if state is None:
            state = self._tenants[name] = _Tenant(name, next(self._tenant_seq), weight, name in self._capped)
        else:
            state.weight = weight
        return state

    def _set_capped(self, capped: Capped) -> None:
        """Take newly capped tenants' flows out of the class heaps and put released ones back."""
        if capped == self._capped:
            return
        capped = frozenset(capped)
        for name in self._capped - capped:
            state = self._tenants.get(name)
            if state is not None:
                state.capped = False
                for flow in state.flows:
                    if flow.live:
                        self._classes[flow.base].flows += 1
                        self._publish_tag(flow)
                        self._publish_age(flow)
        for name in capped - self._capped:
            state = self._tenants.get(name)
            if state is not None:
                state.capped = True
                for flow in state.flows:
                    if flow.live:
                        self._classes[flow.base].flows -= 1
                        flow.tag_version += 1
                        flow.age_version += 1
        self._capped = capped

    def _virtual(self, cls: _Class) -> float:
        """The class's virtual time: the largest start tag dispatched in it, or its level's if that is ahead.

        A class shares its level's progress: a flow that becomes non-empty
        starts no earlier than anything already dispatched at that level, and
        a class moving to another level takes its progress with it.
        """
        return max(cls.virtual, self._level_virtual[cls.level] - cls.offset)

    def _steps(self, enqueued_at: float, base: int) -> int:
        """Levels a class rises when its oldest eligible head arrived at ``enqueued_at``."""
        steps = 0
        while steps < base and enqueued_at + (steps + 1) * self.aging_seconds <= self._clock:
            steps += 1
        return steps

    @staticmethod
    def _top(heap: list[tuple[float, int, int, _Flow]], tags: bool) -> _Flow:
        """The best flow in a class heap (which holds a current entry for each of its flows)."""
        while True:
            _, _, version, flow = heap[0]
            if version == (flow.tag_version if tags else flow.age_version):
                return flow
            heapq.heappop(heap)

    def _publish_tag(self, flow: _Flow) -> None:
        cls = self._classes[flow.base]
        flow.tag_version += 1
        heapq.heappush(cls.by_tag, (flow.tag, flow.tenant.seq, flow.tag_version, flow))
        if len(cls.by_tag) > _COMPACT_FACTOR * cls.flows + _COMPACT_FLOOR:
            cls.by_tag = [item for item in cls.by_tag if item[2] == item[3].tag_version]
            heapq.heapify(cls.by_tag)

    def _publish_age(self, flow: _Flow) -> None:
        cls = self._classes[flow.base]
        flow.age_version += 1
        head = flow.head
        heapq.heappush(cls.by_age, (head.enqueued_at, head.seq, flow.age_version, flow))
        if len(cls.by_age) > _COMPACT_FACTOR * cls.flows + _COMPACT_FLOOR:
            cls.by_age = [item for item in cls.by_age if item[2] == item[3].age_version]
            heapq.heapify(cls.by_age)

    def _shrink(self, flow: _Flow, head_changed: bool) -> None:
        """Account for one task (no longer alive) leaving ``flow``."""
        flow.live -= 1
        if flow.live == 0:
            flow.tasks = []
            flow.tag_version += 1
            flow.age_version += 1
            if not flow.tenant.capped:
                self._classes[flow.base].flows -= 1
            return
        tasks = flow.tasks
        if len(tasks) > _COMPACT_FACTOR * flow.live + _COMPACT_FLOOR:
            flow.tasks = tasks = [item for item in tasks if item[3].alive]
            heapq.heapify(tasks)
        while not tasks[0][3].alive:
            heapq.heappop(tasks)
        if head_changed and not flow.tenant.capped:
            self._publish_age(flow)

    def _dispatch(self, cls: _Class, flow: _Flow) -> Entry:
        task = heapq.heappop(flow.tasks)[3]
        del self._tasks[task.task_id]
        task.alive = False
        start = flow.tag
        if start > cls.virtual:
            cls.virtual = start
        aligned = start + cls.offset
        if aligned > self._level_virtual[cls.level]:
            self._level_virtual[cls.level] = aligned
        flow.tag = start + task.cost / (flow.tenant.weight * self.class_weights[flow.base])
        self._shrink(flow, head_changed=True)
        if flow.live:
            self._publish_tag(flow)
        return Entry(task.task_id, flow.tenant.name, CLASSES[flow.base], CLASSES[cls.level], task.cost, task.rank,
                     task.enqueued_at, start)

    def _copy(self, first: int | None = None) -> FairScheduler:
        """An independent scheduler in the same state (live tasks only), for previews. O(n).

        ``first``: only each flow's first ``first`` live tasks in its order, walking
        its heap from the root: enough for that many decisions."""
        twin = FairScheduler(self.aging_seconds, self.class_weights, self.idle_credit)
        twin._clock = self._clock
        twin._level_virtual = list(self._level_virtual)
        twin._capped = self._capped
        for mine, theirs in zip(self._classes, twin._classes, strict=True):
            theirs.virtual, theirs.offset, theirs.level = mine.virtual, mine.offset, mine.level
        for name, state in self._tenants.items():
            copy = twin._tenants[name] = _Tenant(name, state.seq, state.weight, state.capped)
            for flow, flow_copy in zip(state.flows, copy.flows, strict=True):
                flow_copy.tag = flow.tag
                for neg_rank, enqueued_at, seq, task in _in_heap_order(flow.tasks, first):
                    if task.alive:
                        twin_task = _Task(task.task_id, flow_copy, task.cost, task.rank, task.enqueued_at, task.seq)
                        twin._tasks[task.task_id] = twin_task
                        flow_copy.tasks.append((neg_rank, enqueued_at, seq, twin_task))
                        if first is not None and len(flow_copy.tasks) >= first:
                            break
                if flow_copy.tasks:
                    heapq.heapify(flow_copy.tasks)
                    flow_copy.live = len(flow_copy.tasks)
                    if not copy.capped:
                        twin._classes[flow.base].flows += 1
                        twin._publish_tag(flow_copy)
                        twin._publish_age(flow_copy)
        return twin


_HeapEntry = tuple[float, float, int, _Task]  # a flow heap's (-rank, enqueued_at, seq, task)


def _in_heap_order(heap: list[_HeapEntry], first: int | None) -> Iterator[_HeapEntry]:
    """A flow heap's entries: all of them as stored (``first`` None), or smallest first,
    lazily, walking the heap from its root (a frontier of the children of those taken),
    so taking the first k costs O(k log k) whatever the heap's size."""
    if first is None:
        yield from heap
        return
    frontier = [(heap[0], 0)] if heap else []
    while frontier:
        entry, at = heapq.heappop(frontier)
        yield entry
        for child in (2 * at + 1, 2 * at + 2):
            if child < len(heap):
                heapq.heappush(frontier, (heap[child], child))
