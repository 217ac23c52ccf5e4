"""Placement as an integer program (apps.scheduler.placement_program): the plan is always
feasible, never worth less than first-fit decreasing's on the same input (served demand
first), and a placement that is already the program's own answer is left as it is. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.scheduler import placement_program
from apps.scheduler.placement import GIB, Bin, Gpu, Item, Plan, Slot, plan_placement


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Item], list[Bin], dict[str, list[Slot]], dict[str, int]]:
    """Items (GPU ones with memory and demand, maybe a CPU one), workers (GPUs, slots, the
    items they may host), a current placement that may be stale (gone workers, full GPUs)
    and the copies wanted."""
    keys = [f"m{n}" for n in range(draw(st.integers(1, 6)))]
    items = [
        Item(key, "gpu", draw(st.integers(1, 16)) * GIB, demand=draw(st.integers(0, 8))) for key in keys
    ]
    if draw(st.booleans()):
        items.append(Item("echo", "cpu"))
    bins = []
    for w in range(draw(st.integers(1, 4))):
        gpus = tuple(Gpu(g, draw(st.sampled_from([0, 4, 8, 12, 16, 24])) * GIB) for g in range(draw(st.integers(0, 2))))
        hosts = draw(st.none() | st.frozensets(st.sampled_from([*keys, "echo"])))
        bins.append(Bin(f"w{w}", gpus, slots=draw(st.none() | st.integers(0, 4)), hosts=hosts))
    anywhere = [Slot(b.key, g.index) for b in bins for g in b.gpus] + [Slot("gone", 0)]
    current = {key: draw(st.lists(st.sampled_from(anywhere), max_size=2, unique=True)) for key in keys}
    desired = {key: draw(st.integers(1, 3)) for key in keys}
    return items, bins, current, desired


def assert_feasible(plan: Plan, items: list[Item], bins: list[Bin], desired: Mapping[str, int]) -> None:
    by_key = {b.key: b for b in bins}
    free = {(b.key, g.index): g.free_bytes for b in bins for g in b.gpus}
    used = dict.fromkeys(free, 0)
    need = {item.key: item for item in items}
    for key, slots in plan.slots.items():
        assert all(by_key[slot.bin].may_host(key) for slot in slots), (key, slots)
        assert len({slot.bin for slot in slots}) == len(slots)  # one copy per worker
        if need[key].device == "gpu":
            assert 1 <= len(slots) <= desired[key]
            for slot in slots:
                used[(slot.bin, slot.gpu)] += need[key].gpu_memory_bytes
    assert all(used[gpu] <= free[gpu] for gpu in free), (used, free)
    assert set(plan.slots) | {u.item for u in plan.unplaced} == set(need)
    assert not set(plan.slots) & {u.item for u in plan.unplaced}


# Each example runs FFD and one to three small solves: 150 keep the file well under 20 s.
PROPERTIES = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(fleets())
def test_the_plan_is_feasible_and_never_worth_less_than_first_fit_decreasing(fleet):
    items, bins, current, desired = fleet

    plan = placement_program.plan(items, bins, current, desired=desired)

    assert_feasible(plan, items, bins, desired)
    ffd = plan_placement(items, bins, current, desired=desired)
    ours, theirs = (placement_program.worth(p, items, bins, current) for p in (plan, ffd))
    assert ours >= theirs
    assert ours.served >= theirs.served
    # Served demand never exceeds what is asked, nor the slots of the workers holding copies.
    assert ours.served <= sum(item.demand for item in items if item.key in plan.slots)
    if all(b.slots is not None for b in bins):
        assert ours.served <= sum(b.slots or 0 for b in bins)


@PROPERTIES
@given(fleets())
def test_a_placement_that_is_already_the_programs_answer_is_not_moved(fleet):
    items, bins, current, desired = fleet
    settled = placement_program.plan(items, bins, current, desired=desired)

    again = placement_program.plan(items, bins, settled.slots, desired=desired)

    assert again.slots == settled.slots  # the same copies, primaries and order
    assert again.unplaced == settled.unplaced
    assert again.short == settled.short


def test_the_program_places_what_first_fit_decreasing_leaves_out():
    # 20 GiB on two 10 GiB GPUs: FFD puts 5+4 and 4+3+2, and the last 2 fits nowhere;
    # 5+3+2 and 4+4+2 hold them all.
    items = [Item(key, "gpu", gib * GIB) for key, gib in [("a", 5), ("b", 4), ("c", 4), ("d", 3), ("e", 2), ("f", 2)]]
    bins = [Bin("w0", (Gpu(0, 10 * GIB),)), Bin("w1", (Gpu(0, 10 * GIB),))]

    ffd = plan_placement(items, bins)
    plan = placement_program.plan(items, bins)

    assert [u.item for u in ffd.unplaced] == ["f"]
    assert plan.unplaced == ()
    assert plan.method == "integer program (optimal)"


def test_copies_go_where_task_slots_serve_their_demand():
    # Both fit on w0, whose 2 slots serve 2 of the 8 queued tasks; FFD stacks them there.
    # The program puts one of them on w1, whose slots serve 2 more.
    items = [Item("a", "gpu", 4 * GIB, demand=4), Item("b", "gpu", 4 * GIB, demand=4)]
    bins = [Bin("w0", (Gpu(0, 10 * GIB),), slots=2), Bin("w1", (Gpu(0, 10 * GIB),), slots=2)]

    ffd = plan_placement(items, bins)
    plan = placement_program.plan(items, bins)

    assert {slots[0].bin for slots in ffd.slots.values()} == {"w0"}
    assert placement_program.served_demand(ffd, items, bins) == 2
    assert sorted(slots[0].bin for slots in plan.slots.values()) == ["w0", "w1"]
    assert placement_program.served_demand(plan, items, bins) == 4


def test_a_worker_takes_only_the_items_it_may_host():
    items = [Item("a", "gpu", 4 * GIB), Item("b", "gpu", 4 * GIB)]
    bins = [Bin("w0", (Gpu(0, 10 * GIB),), hosts=frozenset({"b"})), Bin("w1", (Gpu(0, 2 * GIB),))]

    for plan in (plan_placement(items, bins), placement_program.plan(items, bins)):
        assert plan.slots == {"b": (Slot("w0", 0),)}
        assert [u.item for u in plan.unplaced] == ["a"]


def test_without_the_solver_or_its_time_the_plan_is_first_fit_decreasing(monkeypatch):
    items = [Item(key, "gpu", gib * GIB) for key, gib in [("a", 5), ("b", 4), ("c", 4), ("d", 3), ("e", 2), ("f", 2)]]
    bins = [Bin("w0", (Gpu(0, 10 * GIB),)), Bin("w1", (Gpu(0, 10 * GIB),))]
    ffd = plan_placement(items, bins)

    no_time = placement_program.plan(items, bins, time_limit=0)
    monkeypatch.setattr(placement_program, "milp", None)  # as if scipy were not installed
    no_solver = placement_program.plan(items, bins)

    assert no_time.slots == no_solver.slots == ffd.slots
    assert no_time.method == (
        "first-fit decreasing (the solver found no plan: the time limit passed before the solver ran)"
    )
    assert no_solver.method == "first-fit decreasing (scipy is not installed)"
