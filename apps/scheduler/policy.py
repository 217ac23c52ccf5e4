"""The scheduling policy: which queued task of one model runs next.

Pure Python, standard library only: no Django, no I/O, no clock of its own
(every call takes ``now``). That keeps the rules testable with property tests
and a discrete-event simulation (``bench/simulate.py``), and lets the
dispatcher keep one ``FairScheduler`` per model in memory, rebuilt from the
database when it starts. docs/scheduling.md explains the rules and bounds;
this docstring is the summary.

Order of service
----------------
1. **Effective class.** Classes are ``interactive`` > ``normal`` > ``batch``.
   A task rises one class per ``aging_seconds`` waited
   (``effective = max(0, base − ⌊waited / aging_seconds⌋)``), so a batch task
   competes as interactive after ``2 × aging_seconds``. The lowest effective
   class among eligible tasks is always served first.
2. **Fair share inside a class** — start-time fair queuing over tenants. Each
   tenant has one virtual tag per class. Dispatching a task at that class
   returns the tag as the task's *start tag* and advances it by
   ``estimated_cost / weight``; ``complete`` later moves it by
   ``(actual − estimated) / weight``. The tenant with the smallest tag is
   served, so a tenant that floods the queue waits behind its own work.
   A tenant that starts competing in a class (its first task there, by
   arrival or by aging) has its tag lifted to the class's virtual time (the
   largest start tag dispatched there): being idle earns no credit.
3. **Inside a tenant** at one class: ``rank`` descending (the critical-path
   hint: e.g. the longest chain of descendants in its workflow), then arrival.
4. **Capped tenants** (at their running-task cap, named by the caller at each
   decision) are passed over without changing their tag: they keep their
   place and the next eligible tenant is served.

Cost
----
``add``, ``remove``, ``complete`` and ``next`` are O(log n) amortized: per
tenant and class a heap of its tasks, per class a heap of the tenants
competing in it keyed by their tag, and one heap of pending promotions keyed
by due time, consumed lazily as ``now`` advances (each task is promoted at
most twice). Stale heap entries are skipped when met and compacted when they
outnumber live ones. ``next`` additionally pops and re-pushes one entry per
capped tenant ahead of the chosen one: O((1 + k) log T) with k such tenants.
``peek_order`` and ``position`` are O(n log n): they are for queue-position
displays, not for the dispatch path.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Container, Hashable, Iterator
from dataclasses import dataclass

CLASSES: tuple[str, ...] = ("interactive", "normal", "batch")
"""Priority classes, highest first; a class's index is its level (0 = top)."""

_LEVELS = len(CLASSES)
_LEVEL_OF = {name: level for level, name in enumerate(CLASSES)}

Capped = Container[str] | Callable[[str], bool]
"""Tenants at their running cap: a set (anything with ``in``) or a predicate."""

# A heap is rebuilt from its live entries once its stale entries outnumber
# them by this factor (plus a small floor, so tiny heaps are never rebuilt):
# that bounds memory while keeping the rebuild's O(size) cost amortized O(1).
_COMPACT_FACTOR = 2
_COMPACT_FLOOR = 64


@dataclass(frozen=True, slots=True)
class Entry:
    """A task handed out by ``next`` (or listed by ``peek_order``).

    ``effective_class`` is the class the task was chosen in; pass it, with
    ``estimated_cost``, to ``complete`` when the task ends, so the correction
    reaches the tag that was charged.
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
    __slots__ = ("task_id", "tenant", "base", "level", "cost", "rank", "enqueued_at", "seq", "alive")

    def __init__(
        self, task_id: Hashable, tenant: _Tenant, base: int, level: int, cost: float, rank: float,
        enqueued_at: float, seq: int,
    ) -> None:
        self.task_id = task_id
        self.tenant = tenant
        self.base = base
        self.level = level
        self.cost = cost
        self.rank = rank
        self.enqueued_at = enqueued_at
        self.seq = seq  # arrival order at equal enqueued_at, and a unique heap tie-breaker
        self.alive = True  # False once dispatched or removed: its heap entries are then stale

    def queue_key(self) -> tuple[float, float, int]:
        """Order inside a tenant's class: rank descending, then arrival."""
        return (-self.rank, self.enqueued_at, self.seq)


class _Tenant:
    __slots__ = ("name", "seq", "weight", "tags", "queues", "live", "versions")

    def __init__(self, name: str, seq: int, weight: float) -> None:
        self.name = name
        self.seq = seq  # tie-breaker between equal tags: order of first appearance
        self.weight = weight
        self.tags = [0.0] * _LEVELS
        # Per class: a heap of (queue_key..., task); an entry is stale once its
        # task is no longer alive or has been promoted out of this class.
        self.queues: list[list[tuple[float, float, int, _Task]]] = [[] for _ in range(_LEVELS)]
        self.live = [0] * _LEVELS
        # Bumped whenever this tenant's entry in a class's tenant heap becomes
        # outdated (tag moved, or no task left in the class).
        self.versions = [0] * _LEVELS


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


def _predicate(capped: Capped) -> Callable[[str], bool]:
    if callable(capped):
        return capped
    return capped.__contains__


class FairScheduler:
    """One model's ready queue in policy order (see the module docstring).

    Time is whatever clock the caller uses consistently (seconds); ``now``
    should not go backwards, and if it does the latest time seen is used, so
    a task's effective class never drops back.
    """

    def __init__(self, aging_seconds: float = 300.0) -> None:
        """``aging_seconds``: the wait that lifts a task one class (``math.inf`` disables aging)."""
        if not aging_seconds > 0:
            raise ValueError(f"aging_seconds must be positive, got {aging_seconds!r}")
        self.aging_seconds = float(aging_seconds)
        self._tasks: dict[Hashable, _Task] = {}
        self._tenants: dict[str, _Tenant] = {}
        self._tenant_seq = itertools.count()
        self._task_seq = itertools.count()
        # Per class: the virtual time (largest start tag dispatched there) and a
        # heap of (tag, tenant seq, version, tenant) over tenants with tasks there.
        self._virtual = [0.0] * _LEVELS
        self._ready: list[list[tuple[float, int, int, _Tenant]]] = [[] for _ in range(_LEVELS)]
        self._competing = [0] * _LEVELS  # tenants with at least one task in the class
        # Pending promotions: (due time, task seq, task), one per live task above the top class.
        self._promotions: list[tuple[float, int, _Task]] = []
        self._promotable = 0
        self._clock = -math.inf

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def tag(self, tenant: str, priority_class: str) -> float:
        """The tenant's current tag in a class (0.0 for a tenant never seen)."""
        state = self._tenants.get(tenant)
        return state.tags[_level(priority_class)] if state else 0.0

    def virtual_time(self, priority_class: str) -> float:
        """The class's virtual time: the largest start tag dispatched in it so far."""
        return self._virtual[_level(priority_class)]

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
        became ready: a rebuilt or re-queued task keeps the aging it has
        earned, and arrival order among a tenant's equal-rank tasks follows it.
        """
        if task_id in self._tasks:
            return False
        base = _level(priority_class)
        cost = _positive("estimated_cost", estimated_cost)
        rank = float(rank)
        if not math.isfinite(rank):
            raise ValueError(f"rank must be finite, got {rank!r}")
        self._advance(now)
        state = self._tenant(tenant, _positive("weight", weight))
        arrived = self._clock if enqueued_at is None else float(enqueued_at)
        steps = 0
        while steps < base and self._promotion_due(arrived, steps) <= self._clock:
            steps += 1
        task = _Task(task_id, state, base, base - steps, cost, rank, arrived, next(self._task_seq))
        self._tasks[task_id] = task
        self._enter(task, task.level)
        if task.level > 0:
            heapq.heappush(self._promotions, (self._promotion_due(arrived, steps), task.seq, task))
            self._promotable += 1
        return True

    def remove(self, task_id: Hashable, now: float) -> bool:
        """Drop a queued task (cancelled, or dispatched elsewhere); False if it is not queued.

        Nothing is charged: tags move only when a task is dispatched. ``now``
        (like ``complete``'s) applies the promotions due before the removal
        first, so lazy aging gives the same result as promotions made exactly
        when due: whether a tenant was still competing in a class decides
        whether its tag is lifted when it competes there again.
        """
        self._advance(now)
        task = self._tasks.pop(task_id, None)
        if task is None:
            return False
        self._retire(task)
        self._leave(task.tenant, task.level)
        if len(self._promotions) > _COMPACT_FACTOR * self._promotable + _COMPACT_FLOOR:
            self._promotions = [item for item in self._promotions if item[2].alive]
            heapq.heapify(self._promotions)
        return True

    def next(self, now: float, capped: Capped = ()) -> Entry | None:
        """Pop the task to run next, passing over ``capped`` tenants; None if none is eligible.

        To fill ``n`` free slots call it up to ``n`` times, adding a tenant to
        ``capped`` as soon as it reaches its running cap.
        """
        self._advance(now)
        is_capped = _predicate(capped)
        for level in range(_LEVELS):
            if not self._competing[level]:
                continue
            heap = self._ready[level]
            passed_over: list[tuple[float, int, int, _Tenant]] = []
            chosen: _Tenant | None = None
            while heap:
                _, _, version, state = heap[0]
                if version != state.versions[level]:
                    heapq.heappop(heap)
                elif is_capped(state.name):
                    passed_over.append(heapq.heappop(heap))
                else:
                    chosen = state
                    break
            for item in passed_over:  # their tags did not change: same place in the heap
                heapq.heappush(heap, item)
            if chosen is not None:
                return self._dispatch(chosen, level)
        return None

    def complete(
        self, tenant: str, effective_class: str, estimated_cost: float, actual_cost: float, now: float
    ) -> None:
        """Correct the tag charged for a finished task to its actual cost.

        The tenant's tag in ``effective_class`` (``Entry.effective_class``)
        moves by ``(actual − estimated) / weight`` (current weight). A tenant
        never seen (e.g. a task dispatched before the dispatcher restarted) is
        ignored: its fresh state carries no charge to correct. ``now``: as
        for ``remove``.
        """
        self._advance(now)
        level = _level(effective_class)
        estimated = _positive("estimated_cost", estimated_cost)
        actual = float(actual_cost)
        if not (actual >= 0 and math.isfinite(actual)):
            raise ValueError(f"actual_cost must be a non-negative finite number, got {actual_cost!r}")
        state = self._tenants.get(tenant)
        if state is None:
            return
        state.tags[level] += (actual - estimated) / state.weight
        if state.live[level]:
            self._publish(state, level)

    # ------------------------------------------------------------ order preview

    def peek_order(self, now: float, capped: Capped = (), k: int | None = None) -> list[Entry]:
        """The first ``k`` (default all) tasks ``next`` would return, in order, if nothing else happened.

        Nothing is dispatched. O(n log n). Exact: with no events, each
        tenant's sequence of (class, tag) keys is non-decreasing, so the
        decisions are a merge of those sequences — a sort.
        """
        self._advance(now)
        is_capped = _predicate(capped)
        keyed = [
            item for state in self._tenants.values() if not is_capped(state.name)
            for level in range(_LEVELS) for item in self._projected(state, level)
        ]
        chosen = sorted(keyed) if k is None else heapq.nsmallest(k, keyed)
        return [
            Entry(task.task_id, state_name, CLASSES[task.base], CLASSES[level], task.cost, task.rank,
                  task.enqueued_at, start)
            for level, start, _, _, task, state_name in chosen
        ]

    def position(self, task_id: Hashable, now: float) -> int | None:
        """1-based place of a queued task in the order ``next`` would follow with no tenant capped.

        None if the task is not queued. O(n log n), for status displays. Caps
        are ignored: a cap holds back only its own tenant, and which tenants
        will be capped when this task's turn comes is unknown.
        """
        self._advance(now)
        task = self._tasks.get(task_id)
        if task is None:
            return None
        key = next(item[:4] for item in self._projected(task.tenant, task.level) if item[4] is task)
        ahead = 0
        for state in self._tenants.values():
            ahead += sum(state.live[: task.level])
            ahead += sum(1 for item in self._projected(state, task.level) if item[:4] < key)
        return ahead + 1

    # ---------------------------------------------------------------- internals

    def _tenant(self, name: str, weight: float) -> _Tenant:
        state = self._tenants.get(name)
        if state is None:
            state = self._tenants[name] = _Tenant(name, next(self._tenant_seq), weight)
        else:
            state.weight = weight
        return state

    def _promotion_due(self, enqueued_at: float, steps_taken: int) -> float:
        """When a task that has risen ``steps_taken`` classes rises once more."""
        return enqueued_at + (steps_taken + 1) * self.aging_seconds

    def _advance(self, now: float) -> None:
        """Apply every promotion due by ``now``, in due order (ties: arrival order)."""
        if now > self._clock:
            self._clock = float(now)
        heap = self._promotions
        while heap and heap[0][0] <= self._clock:
            _, _, task = heapq.heappop(heap)
            if not task.alive:
                continue
            self._leave(task.tenant, task.level)
            self._enter(task, task.level - 1)
            if task.level > 0:
                due = self._promotion_due(task.enqueued_at, task.base - task.level)
                heapq.heappush(heap, (due, task.seq, task))
            else:
                self._promotable -= 1

    def _enter(self, task: _Task, level: int) -> None:
        """Put a live task into its tenant's queue for ``level``."""
        state = task.tenant
        task.level = level
        if state.live[level] == 0:
            # The tenant starts competing in this class: no credit for having been away.
            state.tags[level] = max(state.tags[level], self._virtual[level])
            self._competing[level] += 1
            state.live[level] = 1
            self._publish(state, level)
        else:
            state.live[level] += 1
        heapq.heappush(state.queues[level], (*task.queue_key(), task))

    def _leave(self, state: _Tenant, level: int) -> None:
        """Account for one task leaving a tenant's queue for ``level`` (its heap entry goes stale)."""
        state.live[level] -= 1
        if state.live[level] == 0:
            state.versions[level] += 1
            self._competing[level] -= 1
            state.queues[level] = []  # every entry left is stale
        elif len(state.queues[level]) > _COMPACT_FACTOR * state.live[level] + _COMPACT_FLOOR:
            state.queues[level] = [item for item in state.queues[level] if item[3].alive and item[3].level == level]
            heapq.heapify(state.queues[level])

    def _publish(self, state: _Tenant, level: int) -> None:
        """(Re)insert a competing tenant into the class's tenant heap at its current tag."""
        state.versions[level] += 1
        heap = self._ready[level]
        heapq.heappush(heap, (state.tags[level], state.seq, state.versions[level], state))
        if len(heap) > _COMPACT_FACTOR * self._competing[level] + _COMPACT_FLOOR:
            self._ready[level] = [item for item in heap if item[2] == item[3].versions[level]]
            heapq.heapify(self._ready[level])

    def _retire(self, task: _Task) -> None:
        task.alive = False
        if task.level > 0:
            self._promotable -= 1

    def _dispatch(self, state: _Tenant, level: int) -> Entry:
        queue = state.queues[level]
        while True:
            *_, task = heapq.heappop(queue)
            if task.alive and task.level == level:
                break
        del self._tasks[task.task_id]
        self._retire(task)
        start = state.tags[level]
        if start > self._virtual[level]:
            self._virtual[level] = start
        state.tags[level] = start + task.cost / state.weight
        self._leave(state, level)
        if state.live[level]:
            self._publish(state, level)
        return Entry(task.task_id, state.name, CLASSES[task.base], CLASSES[level], task.cost, task.rank,
                     task.enqueued_at, start)

    def _projected(self, state: _Tenant, level: int) -> Iterator[tuple[int, float, int, int, _Task, str]]:
        """A tenant's queued tasks in ``level`` with the start tags they would be dispatched at.

        Yields ``(level, start tag, tenant seq, index, task, tenant name)``:
        the first four are the task's place in the global order when nothing
        else happens (the tenant heap breaks equal tags by tenant seq).
        """
        if not state.live[level]:
            return
        tasks = sorted(
            (item for item in state.queues[level] if item[3].alive and item[3].level == level),
            key=lambda item: item[:3],
        )
        tag = state.tags[level]
        for index, (*_, task) in enumerate(tasks):
            yield (level, tag, state.seq, index, task, state.name)
            tag += task.cost / state.weight
