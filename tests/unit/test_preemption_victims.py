"""Which running generations a model suspends for its waiting tasks (apps.scheduler.preemption_policy).

Examples of each rule, then properties for any mix hypothesis draws of waiting
and running tasks, weights, caps, guards and tags:

1. Only preemptible tasks are victims: suspendable, running (not merely handed
   out), not asked to stop already, run at least the minimum, preempted fewer
   times than the cap.
2. At most one victim per waiting task, each victim once, and never more slots
   asked than the waiting tasks need: victims plus slots already freeing never
   exceed the waiting tasks that may start.
3. A victim's class is never higher than its waiting task's, each at the level
   its class competes at (aged, as its waiting tasks show); at the same level
   the two are different tenants — a class never outranks itself.
4. Lowest class first: no preemptible task left running is of a lower class
   than a chosen victim (levels as in 3).
5. In order: the waiting tasks given slots are the first ones in the policy's
   order (a tenant at its cap passed over), those taking freeing slots first.
6. No ping-pong: rounds that keep applying their own preemptions, with no
   guard, come to a round without any.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.scheduler.policy import CLASSES, Entry
from apps.scheduler.preemption_policy import Guards, Preemption, Running, Tags, choose_victims, preemptible

NOW = 1_000.0
OPEN = Guards(min_run_seconds=0.0, max_preemptions=100)


def waiting(task_id: str, tenant: str, priority_class: str, effective_class: str | None = None,
            start_tag: float = 0.0) -> Entry:
    return Entry(task_id, tenant, priority_class, effective_class or priority_class, 100.0, 0.0, NOW, start_tag)


# The policy's default class weights: a normal task of cost 100 at weight 1 moves its flow's tag by 25.
CLASS_WEIGHTS = (16.0, 4.0, 1.0)


def running(task_id: str, tenant: str, priority_class: str, started_at: float | None = NOW - 60, *,
            preemptions: int = 0, suspendable: bool = True, leaving: bool = False) -> Running:
    return Running(task_id, tenant, priority_class, started_at, preemptions, suspendable, leaving)


def victims(chosen: list[Preemption]) -> list[object]:
    return [preemption.victim.task_id for preemption in chosen]


# ------------------------------------------------------------------ examples


def test_an_interactive_task_takes_the_slot_of_the_batch_generation_started_last():
    held = [running(f"b{n}", "acme", "batch", started_at=NOW - 60 + n) for n in range(4)]
    chosen = choose_victims([waiting("i", "globex", "interactive")], held, 4, NOW, {}, OPEN)
    assert victims(chosen) == ["b3"] and chosen[0].waiter.task_id == "i"


def test_the_lowest_class_goes_first_whatever_its_start():
    held = [running("n", "acme", "normal", started_at=NOW - 10), running("b", "acme", "batch", started_at=NOW - 90)]
    assert victims(choose_victims([waiting("i", "globex", "interactive")], held, 2, NOW, {}, OPEN)) == ["b"]


def test_an_aged_task_competes_at_its_effective_class():
    held = [running("n", "acme", "normal")]
    aged = waiting("old", "globex", "batch", effective_class="interactive")
    assert victims(choose_victims([aged], held, 1, NOW, {}, OPEN)) == ["n"]
    assert choose_victims([waiting("fresh", "globex", "batch")], held, 1, NOW, {}, OPEN) == []


def test_a_class_aged_by_its_backlog_does_not_outrank_its_own_running_tasks():
    held = [running(f"a{n}", "acme", "normal") for n in range(2)] + [running(f"g{n}", "globex", "normal")
                                                                      for n in range(2)]
    # Aging moves the whole class: acme's and globex's running tasks compete as interactive too.
    line = [waiting("a2", "acme", "normal", effective_class="interactive"),
            waiting("g2", "globex", "normal", effective_class="interactive")]
    assert choose_victims(line, held, 4, NOW, {}, OPEN) == []
    # Among its tenants the fair share still applies: initech holds nothing, acme is over.
    held.append(running("a3", "acme", "normal", NOW - 1))
    line = [waiting("i0", "initech", "normal", effective_class="interactive")]
    assert victims(choose_victims(line, held, 5, NOW, {}, OPEN)) == ["a3"]


def test_classes_aged_to_one_level_meet_there_by_fair_share():
    held = [running("n", "acme", "normal")]
    line = [waiting("b", "globex", "batch", effective_class="interactive"),
            waiting("n2", "acme", "normal", effective_class="interactive")]
    # Both classes compete as interactive, where one slot is not enough for globex's share of it (½).
    assert choose_victims(line, held, 1, NOW, {}, OPEN) == []


def test_a_tenant_over_its_share_gives_a_slot_to_one_under_it_in_the_same_class():
    held = [running(f"a{n}", "acme", "normal", started_at=NOW - 60 + n) for n in range(4)]
    chosen = choose_victims([waiting("g", "globex", "normal")], held, 4, NOW, {}, OPEN)
    assert victims(chosen) == ["a3"]


def test_a_tenant_at_its_share_keeps_its_slots():
    held = [running("a0", "acme", "normal"), running("a1", "acme", "normal"),
            running("g0", "globex", "normal"), running("g1", "globex", "normal")]
    assert choose_victims([waiting("g2", "globex", "normal")], held, 4, NOW, {}, OPEN) == []


def test_the_share_follows_the_weights():
    held = [running(f"a{n}", "acme", "normal", NOW - 60 + n) for n in range(3)] + [running("g0", "globex", "normal")]
    weighted = {"acme": 3.0, "globex": 1.0}
    assert choose_victims([waiting("g1", "globex", "normal")], held, 4, NOW, weighted, OPEN) == []
    # At equal weights acme's third slot is over its share of two.
    assert victims(choose_victims([waiting("g1", "globex", "normal")], held, 4, NOW, {}, OPEN)) == ["a2"]


def test_a_newcomer_under_its_share_takes_from_the_tenant_most_over_it():
    held = [running("a0", "acme", "normal", NOW - 50), running("a1", "acme", "normal", NOW - 40),
            running("a2", "acme", "normal", NOW - 30), running("g0", "globex", "normal", NOW - 5)]
    chosen = choose_victims([waiting("n", "initech", "normal")], held, 4, NOW, {}, OPEN)
    assert victims(chosen) == ["a2"]  # acme holds 3 of a share of 4/3; globex 1 is within its own


def test_a_tenant_back_from_idleness_preempts_beyond_its_slot_share_while_its_tag_is_far_behind():
    held = [running(f"a{n}", "acme", "normal", started_at=NOW - 60 + n) for n in range(4)]
    # globex comes back with its idle credit: its tags (25 per task) trail acme's by far,
    # so the policy would dispatch all four before acme's next task.
    line = [waiting(f"g{n}", "globex", "normal", start_tag=25.0 * n) for n in range(4)]
    tags = Tags({("acme", "normal"): 10_000.0}, CLASS_WEIGHTS)
    assert victims(choose_victims(line, held, 4, NOW, {}, OPEN, tags=tags)) == ["a3", "a2", "a1", "a0"]
    # Counted in slots alone it stops at its share of two.
    assert victims(choose_victims(line, held, 4, NOW, {}, OPEN)) == ["a3", "a2"]


def test_tags_within_one_task_of_each_other_leave_the_slot_count_to_decide():
    held = [running("a0", "acme", "normal"), running("a1", "acme", "normal"),
            running("g0", "globex", "normal"), running("g1", "globex", "normal")]
    # A steady backlog: the waiter's start tag trails acme's by less than one task (25).
    tags = Tags({("acme", "normal"): 1_020.0, ("globex", "normal"): 1_000.0}, CLASS_WEIGHTS)
    assert choose_victims([waiting("g2", "globex", "normal", start_tag=1_000.0)], held, 4, NOW, {}, OPEN,
                          tags=tags) == []
    # Over its share (3 of 2), acme still gives a slot to globex under it.
    held = [running(f"a{n}", "acme", "normal", NOW - 60 + n) for n in range(3)] + [running("g0", "globex", "normal")]
    assert victims(choose_victims([waiting("g1", "globex", "normal", start_tag=1_000.0)], held, 4, NOW, {}, OPEN,
                                  tags=tags)) == ["a2"]


def test_a_preempted_backlog_does_not_take_its_slots_back_from_a_tenant_far_behind_it():
    # globex, back from idleness, took all four slots; acme's suspended tasks wait again,
    # refunded what they had not generated. Under its slot share (0 of 2) with globex over
    # it, acme would take two back — but the policy would serve globex's next tasks first.
    held = [running(f"g{n}", "globex", "normal") for n in range(4)]
    line = [waiting(f"a{n}", "acme", "normal", start_tag=9_900.0 + 25 * n) for n in range(4)]
    tags = Tags({("globex", "normal"): 100.0}, CLASS_WEIGHTS)
    assert choose_victims(line, held, 4, NOW, {}, OPEN, tags=tags) == []
    assert len(choose_victims(line, held, 4, NOW, {}, OPEN)) == 2


def test_one_victim_per_waiting_task():
    held = [running(f"b{n}", "acme", "batch") for n in range(4)]
    line = [waiting("i0", "globex", "interactive"), waiting("i1", "globex", "interactive")]
    chosen = choose_victims(line, held, 4, NOW, {}, OPEN)
    assert len(chosen) == 2 and [p.waiter.task_id for p in chosen] == ["i0", "i1"]


def test_slots_already_freeing_are_counted_before_asking_more():
    held = [running("asked", "acme", "batch", leaving=True)] + [running(f"b{n}", "acme", "batch") for n in range(3)]
    assert choose_victims([waiting("i0", "globex", "interactive")], held, 4, NOW, {}, OPEN) == []
    two = [waiting("i0", "globex", "interactive"), waiting("i1", "globex", "interactive")]
    assert [p.waiter.task_id for p in choose_victims(two, held, 4, NOW, {}, OPEN)] == ["i1"]


def test_the_guards_hold_back_young_and_often_preempted_generations():
    guards = Guards(min_run_seconds=5.0, max_preemptions=2)
    held = [
        running("young", "acme", "batch", started_at=NOW - 1),
        running("worn", "acme", "batch", started_at=NOW - 30, preemptions=2),
        running("ok", "acme", "batch", started_at=NOW - 60, preemptions=1),
        running("remote", "acme", "batch", started_at=NOW - 20, suspendable=False),
        running("handed-out", "acme", "batch", started_at=None),
    ]
    line = [waiting("i0", "globex", "interactive"), waiting("i1", "globex", "interactive")]
    assert victims(choose_victims(line, held, 5, NOW, {}, guards)) == ["ok"]


def test_the_walk_stops_at_a_waiting_task_that_outranks_nothing():
    held = [running("n", "acme", "normal")]
    line = [waiting("first", "acme", "normal"), waiting("second", "globex", "interactive")]
    # The slot freed for "second" would go to "first", which outranks nothing.
    assert choose_victims(line, held, 1, NOW, {}, OPEN) == []


def test_a_tenant_at_its_running_cap_is_passed_over():
    held = [running(f"b{n}", "acme", "batch") for n in range(2)]
    line = [waiting("capped", "globex", "interactive"), waiting("free", "initech", "interactive")]
    room = {"globex": 0}
    assert [p.waiter.task_id for p in choose_victims(line, held, 2, NOW, {}, OPEN, room)] == ["free"]
    room = {"globex": 1}
    line = [waiting("g0", "globex", "interactive"), waiting("g1", "globex", "interactive")]
    assert [p.waiter.task_id for p in choose_victims(line, held, 2, NOW, {}, OPEN, room)] == ["g0"]
    assert room == {"globex": 0}


# ---------------------------------------------------------------- properties

PROPERTY = settings(max_examples=300, deadline=None)
tenants = st.sampled_from(["t0", "t1", "t2", "t3"])
levels = st.integers(0, len(CLASSES) - 1)


@st.composite
def running_tasks(draw) -> list[Running]:
    count = draw(st.integers(0, 8))
    return [
        Running(
            task_id=f"r{n}",
            tenant=draw(tenants),
            priority_class=CLASSES[draw(levels)],
            started_at=draw(st.one_of(st.none(), st.sampled_from([NOW, NOW - 1, NOW - 3, NOW - 10, NOW - 60]))),
            preemptions=draw(st.integers(0, 3)),
            suspendable=draw(st.booleans()),
            leaving=draw(st.sampled_from([False, False, False, True])),
        )
        for n in range(count)
    ]


@st.composite
def waiting_tasks(draw) -> list[Entry]:
    line = []
    for n in range(draw(st.integers(0, 8))):
        base = draw(levels)
        effective = draw(st.integers(0, base))  # aging only lifts a class
        line.append(waiting(f"w{n}", draw(tenants), CLASSES[base], CLASSES[effective],
                            start_tag=draw(st.sampled_from([0.0, 10.0, 100.0, 10_000.0]))))
    return line


guard_values = st.builds(Guards, st.sampled_from([0.0, 2.0, 5.0]), st.integers(0, 3))
weight_maps = st.dictionaries(tenants, st.sampled_from([0.5, 1.0, 2.0, 4.0]))
room_maps = st.one_of(st.none(), st.dictionaries(tenants, st.integers(0, 2)))
# The running tenants' tags, far apart or close (absent: slot shares only).
tag_maps = st.one_of(st.none(), st.builds(
    Tags, st.dictionaries(st.tuples(tenants, st.sampled_from(CLASSES)), st.sampled_from([0.0, 10.0, 100.0, 10_000.0])),
    st.just(CLASS_WEIGHTS),
))


def _levels(line: list[Entry]) -> dict[str, int]:
    """The level each class competes at: the highest its waiting tasks were given, else its own."""
    levels = {name: CLASSES.index(name) for name in CLASSES}
    for entry in line:
        levels[entry.priority_class] = min(levels[entry.priority_class], CLASSES.index(entry.effective_class))
    return levels


def _may_start(line: list[Entry], room: dict[str, int] | None) -> list[Entry]:
    """The waiting tasks in order that a walk through them may give slots: each takes
    one of its tenant's room, and a tenant with none left is passed over."""
    left = dict(room or {})
    taken = []
    for entry in line:
        if left.get(entry.tenant, 1) <= 0:
            continue
        taken.append(entry)
        if entry.tenant in left:
            left[entry.tenant] -= 1
    return taken


@PROPERTY
@given(running_tasks(), waiting_tasks(), st.integers(1, 10), weight_maps, guard_values, room_maps, tag_maps)
def test_victims_obey_the_rules(held, line, extra_slots, weights, guards, room, tags):
    slots = len(held) + extra_slots - 1  # a full model: every slot held, or (extra 1..) not quite
    room_before = dict(room) if room is not None else None
    chosen = choose_victims(line, held, max(1, slots), NOW, weights, guards, room, tags)
    chosen_victims = [p.victim for p in chosen]
    chosen_waiters = [p.waiter for p in chosen]
    leaving = sum(task.leaving for task in held)

    # 1. only preemptible tasks, within the guards
    for victim in chosen_victims:
        assert victim.suspendable and not victim.leaving and victim.started_at is not None
        assert NOW - victim.started_at >= guards.min_run_seconds
        assert victim.preemptions < guards.max_preemptions
    # 2. one each, and no more than the waiting tasks need
    assert len(set(id(v) for v in chosen_victims)) == len(chosen_victims)
    assert len({w.task_id for w in chosen_waiters}) == len(chosen_waiters)
    may_start = _may_start(line, room_before)
    assert len(chosen) + min(leaving, len(may_start)) <= len(may_start)
    # 3. never a victim of a higher class; at the same class, another tenant
    level = _levels(line)
    for preemption in chosen:
        waiter_level, victim_level = level[preemption.waiter.priority_class], level[preemption.victim.priority_class]
        assert victim_level >= waiter_level
        if victim_level == waiter_level:
            assert preemption.victim.tenant != preemption.waiter.tenant
    # 4. lowest class first
    left_running = [task for task in held if preemptible(task, NOW, guards) and task not in chosen_victims]
    for victim in chosen_victims:
        assert all(level[task.priority_class] <= level[victim.priority_class] for task in left_running)
    # 5. in order: those taking freeing slots, then those given victims
    first = min(leaving, len(may_start))
    assert chosen_waiters == may_start[first:first + len(chosen)]
    # caps: each tenant's room is taken by the tasks given slots, never below zero
    if room is not None and room_before is not None:
        given = Counter(w.tenant for w in may_start[:first + len(chosen)])
        assert room == {tenant: left - given[tenant] for tenant, left in room_before.items()}
        assert all(left >= 0 for left in room.values())


@PROPERTY
@given(running_tasks(), waiting_tasks(), weight_maps)
def test_applied_preemptions_settle_without_ping_pong(held, line, weights):
    """Each round's victims wait at the back, their waiting tasks run; with no guard,
    a few rounds reach one with nothing to preempt (each swap lowers Σ(n − share)²)."""
    held = [Running(t.task_id, t.tenant, t.priority_class, NOW - 60, 0, True) for t in held]
    line = [waiting(str(w.task_id), w.tenant, w.effective_class) for w in line]  # no aging from here on
    slots = max(1, len(held))
    for _ in range(len(held) * len(CLASSES) * 8 + 1):
        chosen = choose_victims(line, held, slots, NOW, weights, OPEN)
        if not chosen:
            return
        for preemption in chosen:
            victim, waiter = preemption.victim, preemption.waiter
            held.remove(victim)
            held.append(Running(waiter.task_id, waiter.tenant, waiter.effective_class, NOW - 60, 0, True))
            line.remove(waiter)
            line.append(waiting(str(victim.task_id), victim.tenant, victim.priority_class))
    raise AssertionError(f"still preempting after many rounds: {held} / {line}")
