"""Preemption: which running generations of one model give their slots to waiting tasks.

Pure Python, standard library only, like ``apps.scheduler.policy``: no Django,
no I/O, no clock of its own (``now`` is passed). ``apps.scheduler.preemption``
reads the running tasks, calls ``choose_victims`` for each model that has tasks
waiting and no free slot, and asks the workers to suspend the victims at their
next token boundary; each goes back to the queue and resumes later where it
stopped. docs/scheduling.md ("Preemption and time slicing") has the rules in
prose; this is the summary.

Rules
-----
The waiting tasks come in the order the fair-share policy would dispatch them
(``FairScheduler.peek_order``), each with its *effective* class (after aging).

1. **Outranking.** A waiting task outranks a running one when its class
   competes at a higher level than the running task's, or at the same level
   when its tenant is *under* its fair share of the model's slots while the
   running task's tenant is *over* its own. A class competes at the highest
   effective class its waiting tasks are given (aging moves whole classes),
   else at its own: a running task's class has aged with its waiting tasks,
   so a class never outranks itself — a backlog that outlasts the aging
   period would otherwise preempt every running task of its class.
   With the policy's tags (``tags``), the policy's own order decides first
   between two tenants' tasks of one class: a waiting task outranks a running
   one when its start tag is behind the running tenant's current tag by more
   than the waiting task's cost (the policy would dispatch it ahead of that
   tenant's next task by a task or more: a tenant back from idleness with its
   idle credit), and never when it is ahead by as much; within one task's
   cost either way — a steady backlog — the slot shares decide. Slots count
   tasks while the policy counts tokens: a tenant back from idleness would
   otherwise stop preempting at its slot share, though the policy serves its
   next tasks first, and the flooder it preempted would take slots back.
2. **Fair share** of one level on one model: the model's slots ``S`` divided
   among the tenants with work at that level — running (or handed to a worker)
   on the model, or among the waiting tasks given — in proportion to their
   weights: ``share(t) = S × w_t / Σ w_u``. A tenant running ``n`` tasks at
   the level is *over* when ``n > share`` and *under* when ``n + 1 ≤ share``:
   it stays within its share after taking the slot. The asymmetry is what
   stops two tenants trading a slot back and forth: each swap lowers
   ``Σ (n − share)²`` (the winner's term by at least 1, the loser's rises by
   less than 1), so with the shares unchanged no sequence of swaps returns to
   where it started.
3. **Victims**, for each waiting task in order: the lowest-ranked running task
   it outranks — lowest class first, then the tenant furthest over its share,
   then the latest started — among those that may be preempted: its adapter
   can suspend, it has run at least ``min_run_seconds`` in its current segment,
   it was preempted fewer than ``max_preemptions`` times, and it was not asked
   to stop already. At most one victim per waiting task.
4. **Slots about to free.** Running tasks already asked to suspend (or to
   cancel) leave soon; their slots go to the first waiting tasks, which take
   no victim, so a round never asks for more slots than the waiting tasks
   need — the asks of the last round count until they have taken effect.
5. **In order, or not at all.** A freed slot goes to the policy's next task,
   not to the one it was freed for: the walk stops at the first waiting task
   (not at its tenant's running cap) that outranks no running task that may
   be preempted, since the slots freed for those behind it would go to it.

Cost: O(k × r) for k waiting tasks and r running ones, both bounded by the
model's slots.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from apps.scheduler.policy import CLASSES, Entry

_LEVEL_OF = {name: level for level, name in enumerate(CLASSES)}
# Shares are fractions (S × w / Σw): compare them with room for rounding.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Running:
    """A task holding one of the model's slots.

    ``started_at``: the start of its current run segment (a claim sets it);
    None for a task handed to a worker and not claimed yet, which holds its
    slot but is not running anything to suspend. ``leaving``: asked to suspend
    or cancel already; its slot is about to free.
    """

    task_id: Hashable
    tenant: str
    priority_class: str
    started_at: float | None
    preemptions: int
    suspendable: bool
    leaving: bool = False


@dataclass(frozen=True, slots=True)
class Guards:
    """The thrash guards (settings PREEMPT_MIN_RUN_SECONDS and PREEMPT_MAX_PER_TASK)."""

    min_run_seconds: float
    max_preemptions: int


@dataclass(frozen=True, slots=True)
class Tags:
    """The policy's fair-share tags (``FairScheduler.tag``), for rule 1's tag test.

    ``current``: (tenant, class) -> the tenant's tag in that class now, for the
    running tasks' tenants (a tenant missing counts as 0.0, as the policy's
    ``tag`` answers for one never seen). ``class_weights``: the policy's, highest
    class first — a tag moves by ``cost / (weight × class weight)`` per task.
    """

    current: Mapping[tuple[str, str], float]
    class_weights: Sequence[float]

    def step(self, entry: Entry, weight: float) -> float:
        """How far dispatching ``entry`` moves its flow's tag: one task's cost in tag units."""
        return entry.estimated_cost / (weight * self.class_weights[_level(entry.priority_class)])

    def lead(self, waiter: Entry, task: Running) -> float:
        """How far the running task's tenant's tag is ahead of the waiter's start tag (same class)."""
        return self.current.get((task.tenant, task.priority_class), 0.0) - waiter.start_tag


@dataclass(frozen=True, slots=True)
class Preemption:
    """Suspend ``victim`` so that ``waiter`` gets its slot."""

    victim: Running
    waiter: Entry


def _level(priority_class: str) -> int:
    try:
        return _LEVEL_OF[priority_class]
    except KeyError:
        raise ValueError(f"unknown priority class {priority_class!r}; expected one of {CLASSES}") from None


def preemptible(task: Running, now: float, guards: Guards) -> bool:
    """Whether ``task`` may be a victim: it can suspend, it is running and was not
    asked to stop yet, it has run long enough and was preempted fewer times than the cap."""
    return (
        task.suspendable
        and not task.leaving
        and task.started_at is not None
        and now - task.started_at >= guards.min_run_seconds
        and task.preemptions < guards.max_preemptions
    )


class _Shares:
    """Each tenant's fair share of the model's slots and its running count, per class level."""

    def __init__(self, waiting: Sequence[Entry], running: Sequence[Running], slots: int,
                 weights: Mapping[str, float]) -> None:
        self.slots = slots
        self.weights = weights
        # The level each class competes at now: the highest its waiting tasks are
        # given (the first of them in the order; aging moves whole classes).
        self.aged: dict[str, int] = {}
        for entry in waiting:
            level = _level(entry.effective_class)
            if level < self.aged.get(entry.priority_class, len(CLASSES)):
                self.aged[entry.priority_class] = level
        self.counts: Counter[tuple[str, int]] = Counter()
        members: dict[int, set[str]] = {}
        for task in running:
            if not task.leaving:
                level = self.level(task.priority_class)
                self.counts[task.tenant, level] += 1
                members.setdefault(level, set()).add(task.tenant)
        for entry in waiting:
            members.setdefault(self.level(entry.priority_class), set()).add(entry.tenant)
        self.total = {level: sum(self.weight(t) for t in tenants) for level, tenants in members.items()}

    def level(self, priority_class: str) -> int:
        """The level ``priority_class`` competes at: its own, or the one its waiting tasks have aged to."""
        return self.aged.get(priority_class, _level(priority_class))

    def weight(self, tenant: str) -> float:
        return self.weights.get(tenant) or 1.0

    def share(self, tenant: str, level: int) -> float:
        return self.slots * self.weight(tenant) / self.total[level]

    def over(self, tenant: str, level: int) -> float:
        """Slots held beyond the share (negative: under it)."""
        return self.counts[tenant, level] - self.share(tenant, level)

    def is_over(self, tenant: str, level: int) -> bool:
        return self.over(tenant, level) > _EPS

    def is_under(self, tenant: str, level: int) -> bool:
        return self.over(tenant, level) + 1 <= _EPS


def outranks(waiter: Entry, task: Running, shares: _Shares, tags: Tags | None = None) -> bool:
    """Rule 1 of the module docstring, with the running counts as they stand in ``shares``."""
    waiter_level, level = shares.level(waiter.priority_class), shares.level(task.priority_class)
    if waiter_level != level:
        return waiter_level < level
    if tags is not None and waiter.priority_class == task.priority_class and waiter.tenant != task.tenant:
        step = tags.step(waiter, shares.weight(waiter.tenant))
        lead = tags.lead(waiter, task)
        if lead > step:
            return True  # the policy would serve the waiter before the running tenant's next task
        if lead < -step:
            return False  # ... and that task before the waiter: the slot count does not overrule it
    return shares.is_under(waiter.tenant, level) and shares.is_over(task.tenant, level)


def choose_victims(
    waiting: Sequence[Entry],
    running: Sequence[Running],
    slots: int,
    now: float,
    weights: Mapping[str, float],
    guards: Guards,
    room: MutableMapping[str, int] | None = None,
    tags: Tags | None = None,
) -> list[Preemption]:
    """The running tasks of one model to suspend, each with the waiting task it is for.

    ``waiting``: the first waiting tasks in the policy's order (``peek_order``,
    the capped tenants passed over), a model's slots of them are enough.
    ``running``: every task holding one of the model's ``slots``. ``weights``:
    the tenants' fair-share weights (1 where missing). ``room``: how many more
    tasks a tenant may start before its running cap (absent: no cap); a waiting
    task whose tenant has none left is passed over as the policy would, and
    each one given a slot takes one from it — the dict is changed, so that one
    carried across a round's models keeps a tenant within its cap.
    ``tags``: the running tenants' fair-share tags in the model's policy, for
    rule 1's tag test (absent: the slot shares alone decide at one level).
    """
    shares = _Shares(waiting, running, slots, weights)
    candidates = [task for task in running if preemptible(task, now, guards)]
    freeing = sum(1 for task in running if task.leaving)
    chosen: list[Preemption] = []
    for waiter in waiting:
        if room is not None and room.get(waiter.tenant, 1) <= 0:
            continue
        if freeing:
            freeing -= 1  # it takes a slot that a task asked earlier is about to free
        else:
            outranked = [task for task in candidates if outranks(waiter, task, shares, tags)]
            if not outranked:
                break
            victim = min(outranked, key=lambda task: (
                -shares.level(task.priority_class),
                -shares.over(task.tenant, shares.level(task.priority_class)),
                -(task.started_at or 0.0),
                str(task.task_id),
            ))
            candidates.remove(victim)
            shares.counts[victim.tenant, shares.level(victim.priority_class)] -= 1
            chosen.append(Preemption(victim, waiter))
        shares.counts[waiter.tenant, shares.level(waiter.priority_class)] += 1
        if room is not None and waiter.tenant in room:
            room[waiter.tenant] -= 1
    return chosen
