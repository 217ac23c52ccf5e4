"""``peek_order(now, capped, k)`` copies only each flow's first k tasks (k decisions can
take no others): its answer is the first k of the whole order, whatever the flows'
heaps look like inside (many tasks per flow, ranks and arrivals out of order)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.scheduler.policy import CLASSES, FairScheduler

tasks = st.lists(
    st.tuples(
        st.sampled_from(["acme", "globex"]),
        st.sampled_from(CLASSES[:2]),
        st.integers(min_value=0, max_value=3),  # rank
        st.floats(min_value=0, max_value=1000, allow_nan=False),  # enqueued_at
        st.integers(min_value=1, max_value=500),  # cost
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(tasks=tasks, k=st.integers(min_value=1, max_value=20), capped=st.sets(st.sampled_from(["globex"])),
       now=st.floats(min_value=1000, max_value=5000, allow_nan=False))
def test_the_first_k_equal_the_whole_orders_first_k(tasks, k, capped, now):
    scheduler = FairScheduler(aging_seconds=600)
    for n, (tenant, priority_class, rank, enqueued_at, cost) in enumerate(tasks):
        scheduler.add(f"t{n}", tenant, 1.0, priority_class, cost, enqueued_at, rank=rank, enqueued_at=enqueued_at)
    whole = scheduler.peek_order(now, capped)

    assert scheduler.peek_order(now, capped, k) == whole[:k]
    assert len(scheduler) == len(tasks)  # a preview changes nothing


@settings(max_examples=100, deadline=None)
@given(
    ranks=st.lists(st.tuples(st.integers(min_value=0, max_value=5),
                             st.floats(min_value=0, max_value=100, allow_nan=False)), min_size=2, max_size=60),
    k=st.integers(min_value=1, max_value=30),
)
def test_one_long_flow_gives_its_first_k_in_order(ranks, k):
    """One tenant, one class: every decision comes from the same heap, where the k
    smallest are not the first k stored."""
    scheduler = FairScheduler()
    for n, (rank, enqueued_at) in enumerate(ranks):
        scheduler.add(f"t{n}", "acme", 1.0, "normal", 10, 100.0, rank=rank, enqueued_at=enqueued_at)

    assert scheduler.peek_order(100.0, k=k) == scheduler.peek_order(100.0)[:k]
