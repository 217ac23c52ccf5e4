"""The placement plan (apps.scheduler.placement): first-fit decreasing on GPU memory, and as
many replicas as are wanted. Pure, no database."""

from __future__ import annotations

import itertools
import random

import pytest

from apps.scheduler.placement import GIB, Bin, Gpu, Item, Slot, plan_placement


def gpu_item(key: str, gib: float) -> Item:
    return Item(key, "gpu", int(gib * GIB))


def one_gpu_workers(*free_gib: float) -> list[Bin]:
    return [Bin(f"w{i}", (Gpu(0, int(free * GIB)),)) for i, free in enumerate(free_gib)]


def primaries(plan) -> dict[str, Slot]:
    return {key: slots[0] for key, slots in plan.slots.items()}


def used_on(plan, items: list[Item]) -> dict[tuple[str, int], int]:
    need = {item.key: item.gpu_memory_bytes for item in items}
    used: dict[tuple[str, int], int] = {}
    for key, slots in plan.slots.items():
        for slot in slots:
            if slot.gpu is not None:
                used[(slot.bin, slot.gpu)] = used.get((slot.bin, slot.gpu), 0) + need[key]
    return used


# --- First fit decreasing -------------------------------------------------------------------


def test_the_largest_items_are_placed_first_on_the_first_gpu_with_room():
    # In the given order, first fit would put 3 and 4 on w0 (7 of 10) and then
    # have no room for the 8; decreasing order places everything.
    items = [gpu_item("a", 3), gpu_item("b", 4), gpu_item("c", 8), gpu_item("d", 2)]

    plan = plan_placement(items, one_gpu_workers(10, 10))

    assert plan.unplaced == ()
    assert primaries(plan) == {
        "c": Slot("w0", 0),  # 8 first, onto the first GPU
        "b": Slot("w1", 0),  # 4 does not fit beside it
        "a": Slot("w1", 0),  # 3 joins the 4
        "d": Slot("w0", 0),  # 2 fills the first GPU's gap
    }


def test_several_gpus_of_one_worker_are_separate_bins():
    worker = Bin("w0", (Gpu(0, 10 * GIB), Gpu(1, 10 * GIB)))

    plan = plan_placement([gpu_item("a", 6), gpu_item("b", 6)], [worker])

    assert primaries(plan) == {"a": Slot("w0", 0), "b": Slot("w0", 1)}


def test_no_gpu_is_ever_filled_past_its_free_memory():
    rng = random.Random(7)
    for _ in range(200):
        bins = one_gpu_workers(*(rng.choice([8, 16, 24, 40, 80]) for _ in range(rng.randint(1, 5))))
        items = [gpu_item(f"m{i}", rng.uniform(0.5, 30)) for i in range(rng.randint(1, 12))]
        desired = {item.key: rng.randint(1, 4) for item in items}

        plan = plan_placement(items, bins, desired=desired)

        capacity = {(b.key, g.index): g.free_bytes for b in bins for g in b.gpus}
        for slot, used in used_on(plan, items).items():
            assert used <= capacity[slot]
        placed_or_not = set(plan.slots) | {u.item for u in plan.unplaced}
        assert placed_or_not == {item.key for item in items}
        assert not set(plan.slots) & {u.item for u in plan.unplaced}
        for key, slots in plan.slots.items():
            assert len(slots) <= desired[key]
            assert len({slot.bin for slot in slots}) == len(slots)  # at most one copy per worker
        assert {s.item: (s.wanted, s.placed) for s in plan.short} == {
            key: (desired[key], len(slots)) for key, slots in plan.slots.items() if len(slots) < desired[key]
        }


def test_on_equal_gpus_ffd_places_everything_that_fits_with_the_multifit_margin():
    """The stated bound: items that fit on m GPUs of 11/13 of the size are all placed."""
    rng = random.Random(11)
    capacity = 13 * GIB
    for _ in range(300):
        m = rng.randint(1, 4)
        # Items that certainly fit on m GPUs of 11 GiB: cut each GPU into pieces.
        items = []
        for g in range(m):
            left = 11 * GIB
            while left > GIB // 4:
                size = min(left, rng.randint(GIB // 4, 6 * GIB))
                items.append(Item(f"g{g}-{len(items)}", "gpu", size))
                left -= size
        rng.shuffle(items)

        plan = plan_placement(items, [Bin(f"w{i}", (Gpu(0, capacity),)) for i in range(m)])

        assert plan.unplaced == ()


def test_a_fresh_ffd_is_kept_when_stickiness_would_leave_an_item_out():
    # 20 GiB of items on two 10 GiB GPUs: only an exact packing works. Kept where
    # they were, b, c and d leave 2 and 1 GiB gaps and e (3) fits nowhere; a fresh
    # FFD packs 6+4 and 4+3+3.
    items = [gpu_item("a", 6), gpu_item("b", 4), gpu_item("c", 4), gpu_item("d", 3), gpu_item("e", 3)]
    current = {"a": [Slot("w0", 0)], "b": [Slot("w1", 0)], "c": [Slot("w1", 0)], "d": [Slot("w0", 0)]}

    plan = plan_placement(items, one_gpu_workers(10, 10), current)

    assert plan.unplaced == ()
    assert primaries(plan) == {
        "a": Slot("w0", 0), "b": Slot("w0", 0), "c": Slot("w1", 0), "d": Slot("w1", 0), "e": Slot("w1", 0)
    }


def test_an_item_that_still_fits_where_it_is_stays_there():
    items = [gpu_item("a", 4), gpu_item("b", 4)]

    plan = plan_placement(items, one_gpu_workers(10, 10), {"b": [Slot("w1", 0)]})

    assert primaries(plan) == {"a": Slot("w0", 0), "b": Slot("w1", 0)}  # plain FFD would put b on w0


# --- Unplaceable items, with their reasons --------------------------------------------------


def test_an_item_larger_than_every_gpu_is_reported_with_the_largest_gpu():
    plan = plan_placement([gpu_item("huge", 100), gpu_item("small", 1)], one_gpu_workers(24, 40))

    assert set(plan.slots) == {"small"}
    [unplaced] = plan.unplaced
    assert unplaced.item == "huge"
    assert "needs 100.0 GiB" in unplaced.reason
    assert "largest free GPU has 40.0 GiB" in unplaced.reason


def test_an_item_crowded_out_by_larger_ones_is_reported_with_what_was_left():
    items = [gpu_item("a", 7), gpu_item("b", 7), gpu_item("c", 5)]

    plan = plan_placement(items, one_gpu_workers(10, 10))

    assert set(plan.slots) == {"a", "b"}
    [unplaced] = plan.unplaced
    assert unplaced.item == "c"
    assert "after placing the larger models the most left on any GPU is 3.0 GiB" in unplaced.reason


def test_a_gpu_item_with_only_cpu_workers_is_reported():
    plan = plan_placement([gpu_item("a", 1)], [Bin("cpu-only")])

    assert plan.slots == {}
    assert [(u.item, u.reason) for u in plan.unplaced] == [("a", "needs a GPU but no active worker has one")]


def test_without_any_worker_everything_is_reported():
    plan = plan_placement([gpu_item("a", 1), Item("c", "cpu")], [])

    assert plan.slots == {}
    assert sorted(u.item for u in plan.unplaced) == ["a", "c"]
    assert {u.reason for u in plan.unplaced} == {"no active worker"}


# --- CPU items and replicas -----------------------------------------------------------------


def test_a_cpu_item_runs_on_every_worker_and_takes_no_gpu_memory():
    bins = [Bin("cpu-only"), Bin("gpu", (Gpu(0, 2 * GIB),))]

    plan = plan_placement([Item("echo-v1", "cpu"), gpu_item("g", 2)], bins)

    assert plan.slots["echo-v1"] == (Slot("cpu-only"), Slot("gpu"))
    assert plan.slots["g"] == (Slot("gpu", 0),)  # the whole GPU is still the GPU item's


def test_without_a_desired_count_an_item_gets_its_primary_only():
    plan = plan_placement([gpu_item("big", 8), gpu_item("small", 2)], one_gpu_workers(10, 10))

    assert plan.slots == {"big": (Slot("w0", 0),), "small": (Slot("w0", 0),)}
    assert plan.short == ()


def test_wanted_replicas_use_leftover_memory_but_never_before_every_item_is_placed():
    items = [gpu_item("big", 8), gpu_item("small", 2)]

    plan = plan_placement(items, one_gpu_workers(10, 10), desired={"big": 2, "small": 2})

    assert plan.unplaced == ()
    assert plan.slots["big"] == (Slot("w0", 0), Slot("w1", 0))
    assert plan.slots["small"] == (Slot("w0", 0), Slot("w1", 0))

    crowded = plan_placement([gpu_item("a", 6), gpu_item("b", 6)], one_gpu_workers(10, 10), desired={"a": 2, "b": 2})
    assert crowded.unplaced == ()
    assert crowded.slots == {"a": (Slot("w0", 0),), "b": (Slot("w1", 0),)}  # no room for replicas
    assert [str(s) for s in crowded.short] == ["wanted 2 replicas, room for 1"] * 2


def test_two_wanted_with_room_on_two_workers_gives_two_copies():
    plan = plan_placement([gpu_item("tiny", 4)], one_gpu_workers(10, 10), desired={"tiny": 2})

    assert plan.slots == {"tiny": (Slot("w0", 0), Slot("w1", 0))}
    assert plan.short == ()


def test_more_wanted_than_workers_with_room_is_reported_as_a_shortfall():
    plan = plan_placement([gpu_item("tiny", 4)], one_gpu_workers(10, 10, 2), desired={"tiny": 3})

    assert plan.slots == {"tiny": (Slot("w0", 0), Slot("w1", 0))}  # w2 has 2 GiB: no room
    [short] = plan.short
    assert (short.item, short.wanted, short.placed) == ("tiny", 3, 2)
    assert str(short) == "wanted 3 replicas, room for 2"
    assert plan.unplaced == ()  # placed, only not as often as wanted: not an error


def test_a_worker_never_holds_two_copies_of_an_item():
    worker = Bin("w0", (Gpu(0, 10 * GIB), Gpu(1, 10 * GIB)))

    plan = plan_placement([gpu_item("tiny", 4)], [worker], desired={"tiny": 2})

    assert plan.slots == {"tiny": (Slot("w0", 0),)}  # a second copy there adds no worker to pull
    assert [(s.wanted, s.placed) for s in plan.short] == [(2, 1)]


def test_loaded_replicas_are_kept_where_they_are_while_wanted():
    current = {"tiny": [Slot("w0", 0), Slot("w2", 0), Slot("w1", 0)]}

    plan = plan_placement([gpu_item("tiny", 4)], one_gpu_workers(10, 10, 10), current, desired={"tiny": 3})

    assert plan.slots == {"tiny": (Slot("w0", 0), Slot("w2", 0), Slot("w1", 0))}


def test_lowering_desired_removes_the_most_recently_added_replica_never_the_primary():
    # w1 holds the primary; w0 got a replica, then w2 (the newest).
    current = {"tiny": [Slot("w1", 0), Slot("w0", 0), Slot("w2", 0)]}
    bins = one_gpu_workers(10, 10, 10)

    two = plan_placement([gpu_item("tiny", 4)], bins, current, desired={"tiny": 2})
    assert two.slots == {"tiny": (Slot("w1", 0), Slot("w0", 0))}

    one = plan_placement([gpu_item("tiny", 4)], bins, two.slots, desired={"tiny": 1})
    assert one.slots == {"tiny": (Slot("w1", 0),)}  # FFD alone would pick w0


def test_a_surviving_replica_becomes_the_primary_when_the_primary_worker_leaves():
    current = {"tiny": [Slot("gone", 0), Slot("w1", 0)]}

    plan = plan_placement([gpu_item("tiny", 4)], one_gpu_workers(10, 10), current, desired={"tiny": 1})

    assert plan.slots == {"tiny": (Slot("w1", 0),)}  # already loaded there; w0 would be a new load


def test_a_new_replica_never_evicts_another_items_loaded_replica():
    # b's replica on w1 is loaded; a (larger, so first in FFD order) now wants a
    # replica too, and w1 has room for only one of them.
    items = [gpu_item("a", 6), gpu_item("b", 4)]
    current = {"a": [Slot("w0", 0)], "b": [Slot("w0", 0), Slot("w1", 0)]}

    plan = plan_placement(items, one_gpu_workers(10, 8), current, desired={"a": 2, "b": 2})

    assert plan.slots == {"a": (Slot("w0", 0),), "b": (Slot("w0", 0), Slot("w1", 0))}
    assert [(s.item, s.wanted, s.placed) for s in plan.short] == [("a", 2, 1)]


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Item("x", "tpu"),
        lambda: Item("x", "gpu", -1),
        lambda: plan_placement([Item("x", "cpu")] * 2, []),
        lambda: plan_placement([gpu_item("x", 1)], one_gpu_workers(10), desired={"x": 0}),
    ],
)
def test_malformed_input_is_refused(bad):
    with pytest.raises(ValueError):
        bad()


def test_the_plan_does_not_depend_on_the_order_items_are_given_in():
    items = [gpu_item("a", 3), gpu_item("b", 5), gpu_item("c", 5), gpu_item("d", 1)]
    bins = one_gpu_workers(8, 8)
    wanted = {"a": 2, "d": 2}
    plans = {
        tuple(sorted((k, v) for k, v in plan_placement(list(order), bins, desired=wanted).slots.items()))
        for order in itertools.permutations(items)
    }
    assert len(plans) == 1
