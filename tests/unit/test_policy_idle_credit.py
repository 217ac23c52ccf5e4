"""Idle credit: a tenant back from idleness gets a bounded amount of work served ahead."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.scheduler.policy import FairScheduler

COST = 1_000


def _flood_then_burst(credit: float, burst: int, flood_served: int = 50) -> list[str]:
    """A flooder is served alone for a while; then a quiet tenant submits a burst. The order after."""
    scheduler = FairScheduler(aging_seconds=math.inf, idle_credit=credit)
    for n in range(flood_served + 200):
        scheduler.add(f"flood{n}", "flooder", 1.0, "normal", COST, now=0.0)
    for _ in range(flood_served):
        scheduler.next(0.0)
    for n in range(burst):
        scheduler.add(f"quiet{n}", "quiet", 1.0, "normal", COST, now=1.0)
    order = []
    while (entry := scheduler.next(1.0)) is not None:
        order.append(entry.task_id)
    return order


def test_without_credit_a_returning_tenant_alternates_with_the_backlog():
    order = _flood_then_burst(credit=0.0, burst=10)
    assert [name.startswith("quiet") for name in order[:4]] in ([True, False, True, False], [False, True, False, True])


def test_a_burst_within_the_credit_is_served_first_whole():
    order = _flood_then_burst(credit=10 * COST, burst=10)
    assert order[:10] == [f"quiet{n}" for n in range(10)]


def test_a_burst_beyond_the_credit_gets_the_credit_then_its_fair_share():
    order = _flood_then_burst(credit=5 * COST, burst=20)
    assert order[:5] == [f"quiet{n}" for n in range(5)]
    after = order[5:25]
    # Then alternating: about half of the next 20.
    assert 9 <= sum(name.startswith("quiet") for name in after) <= 11


def test_a_tenant_that_used_its_share_earns_no_credit():
    """Both backlogged and served alternately, one goes idle for an instant and comes back: nothing gained."""
    scheduler = FairScheduler(aging_seconds=math.inf, idle_credit=50 * COST)
    for n in range(100):
        scheduler.add(f"a{n}", "a", 1.0, "normal", COST, now=0.0)
    scheduler.add("b0", "b", 1.0, "normal", COST, now=0.0)
    served = [scheduler.next(0.0).task_id for _ in range(2)]
    assert sorted(served) == ["a0", "b0"]  # b's flow is empty now: it "left"
    for n in range(1, 6):
        scheduler.add(f"b{n}", "b", 1.0, "normal", COST, now=0.0)
    order = [scheduler.next(0.0).task_id for _ in range(10)]
    assert sum(name.startswith("b") for name in order) == 5 and order[:2] != ["b1", "b2"]


@settings(max_examples=60, deadline=None)
@given(
    credit_tasks=st.integers(min_value=0, max_value=30),
    weight=st.sampled_from([0.5, 1.0, 2.0, 4.0]),
    idle_rounds=st.integers(min_value=0, max_value=200),
)
def test_the_head_start_never_exceeds_the_credit(credit_tasks, weight, idle_rounds):
    """However long the idleness, the returning tenant is served at most credit/cost
    (scaled by its weight) tasks in a row, plus one, ahead of a backlogged tenant."""
    scheduler = FairScheduler(aging_seconds=math.inf, idle_credit=credit_tasks * COST)
    for n in range(idle_rounds + 400):
        scheduler.add(f"flood{n}", "flooder", 1.0, "normal", COST, now=0.0)
    for _ in range(idle_rounds):
        scheduler.next(0.0)
    for n in range(200):
        scheduler.add(f"quiet{n}", "quiet", weight, "normal", COST, now=0.0)
    run = 0
    while scheduler.next(0.0).tenant == "quiet":
        run += 1
    # Credit in the quiet tenant's own tag units is credit / weight; it then also
    # wins its fair turns (weight per flooder task) until the tags meet.
    assert run <= credit_tasks + math.ceil(weight) + 1


def test_idle_credit_must_be_a_non_negative_number():
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="idle_credit"):
            FairScheduler(idle_credit=bad)
