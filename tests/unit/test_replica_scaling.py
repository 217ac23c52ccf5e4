"""The replica scaler (apps.scheduler.autoscale): queue-driven, with hysteresis. Pure, no database."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.scheduler.autoscale import (
    COOLDOWN_SECONDS,
    DOWN_AFTER_SECONDS,
    UP_AFTER_SECONDS,
    Decision,
    Load,
    ReplicaState,
    ScalingRules,
    decide,
)

SLOTS = 8  # task slots per worker
DEFAULT_RULES = ScalingRules()  # frozen: one instance can be every Fleet's default


class Fleet:
    """A version observed every ``step`` seconds: the scaler's decisions, each one
    honoured (a replica per decision, as long as ``workers`` have room)."""

    def __init__(self, rules: ScalingRules = DEFAULT_RULES, *, replicas: int = 1, workers: int = 10) -> None:
        self.rules = rules
        self.state = ReplicaState(desired=replicas)
        self.placed = replicas
        self.workers = workers
        self.now = 0.0
        self.changes: list[tuple[float, int, int]] = []  # (when, from, to)
        self.reasons: list[str] = []

    def observe(self, queued: int, running: int) -> Decision:
        decision = decide(self.state, Load(queued, running, (SLOTS,) * self.placed), self.now, self.rules)
        self.state = decision.state
        if decision.changed:
            self.changes.append((self.now, decision.previous, decision.state.desired))
            self.reasons.append(decision.reason)
        self.placed = min(self.state.desired, self.workers)
        return decision

    def run(self, seconds: float, queued: int | None = None, running: int | None = None, step: float = 5.0) -> None:
        """Observe for ``seconds``; by default a queue of one full round per slot, all slots busy."""
        end = self.now + seconds
        while self.now < end:
            slots = SLOTS * self.placed
            self.observe(slots if queued is None else queued, slots if running is None else running)
            self.now += step

    @property
    def desired(self) -> int:
        return self.state.desired


def test_an_empty_queue_wants_the_primary_only():
    fleet = Fleet()
    fleet.run(3600, queued=0, running=0)
    assert fleet.desired == 1 and fleet.changes == []


def test_a_brief_spike_does_not_add_a_replica():
    fleet = Fleet()
    fleet.run(UP_AFTER_SECONDS - 5)  # long, but not long enough
    fleet.run(5, queued=2, running=SLOTS)  # drained below one per slot
    fleet.run(UP_AFTER_SECONDS - 5)  # long again: the timer started afresh
    assert fleet.changes == []


def test_a_sustained_queue_adds_one_replica_per_period_never_several_at_once():
    fleet = Fleet()
    fleet.run(UP_AFTER_SECONDS)
    assert fleet.desired == 1
    fleet.observe(SLOTS, SLOTS)
    assert fleet.desired == 2  # after 30 s of a long queue
    assert fleet.changes[0][0] == UP_AFTER_SECONDS

    fleet.run(600)  # the queue keeps growing with the fleet: still long

    whens = [when for when, _, _ in fleet.changes]
    assert all(to == before + 1 for _, before, to in fleet.changes)
    gaps = [b - a for a, b in pairwise(whens)]
    assert gaps and all(gap == max(UP_AFTER_SECONDS, COOLDOWN_SECONDS) for gap in gaps)


def test_the_reason_says_what_was_seen():
    fleet = Fleet(replicas=2)
    fleet.run(30, queued=40, running=16, step=1)
    decision = fleet.observe(40, 16)
    assert decision.changed and (decision.previous, decision.state.desired) == (2, 3)
    assert decision.reason == "40 queued for 16 slots for 30 s"


def test_an_idle_period_removes_one_replica_after_the_down_delay():
    fleet = Fleet(replicas=3)
    fleet.run(DOWN_AFTER_SECONDS, queued=0, running=SLOTS)  # 8 running fit 50 % of the 16 left
    assert fleet.desired == 3
    fleet.observe(0, SLOTS)
    assert fleet.changes == [(DOWN_AFTER_SECONDS, 3, 2)]
    assert fleet.reasons == [
        "nothing queued and 8 running, at most 50% of the 16 slots left without the newest replica, for 300 s"
    ]

    fleet.run(DOWN_AFTER_SECONDS, queued=0, running=1)
    fleet.observe(0, 1)
    assert fleet.desired == 1  # one step per period: the timer restarted at the first
    assert [to for _, _, to in fleet.changes] == [2, 1]


def test_busy_replicas_are_not_removed_even_with_an_empty_queue():
    fleet = Fleet(replicas=2)
    fleet.run(3 * DOWN_AFTER_SECONDS, queued=0, running=SLOTS // 2 + 1)  # over 50 % of what one would keep
    assert fleet.desired == 2


def test_a_momentary_queue_resets_the_idle_timer():
    fleet = Fleet(replicas=2)
    fleet.run(DOWN_AFTER_SECONDS - 10, queued=0, running=0)
    fleet.run(5, queued=1, running=SLOTS)  # a burst, far from "long"
    fleet.run(DOWN_AFTER_SECONDS - 10, queued=0, running=0)
    assert fleet.desired == 2


def test_flapping_load_around_the_thresholds_does_not_flip_the_count():
    fleet = Fleet(replicas=2)
    for _ in range(100):  # long for 20 s, then idle for 20 s, for over an hour
        fleet.run(20)
        fleet.run(20, queued=0, running=0)
    assert fleet.changes == []


def test_never_below_one_replica():
    fleet = Fleet(replicas=2)
    fleet.run(10 * DOWN_AFTER_SECONDS, queued=0, running=0)
    assert fleet.desired == 1 and len(fleet.changes) == 1


def test_after_a_step_up_the_cooldown_holds_off_a_step_down():
    rules = ScalingRules(up_after_seconds=10, down_after_seconds=10, cooldown_seconds=120)
    fleet = Fleet(rules)
    fleet.run(15, step=5)
    assert fleet.desired == 2
    fleet.run(100, queued=0, running=0)  # idle long enough, but within the cooldown
    assert fleet.desired == 2
    fleet.run(30, queued=0, running=0)
    assert fleet.desired == 1


def test_a_wish_without_room_is_not_stacked_higher():
    fleet = Fleet(workers=2)
    fleet.run(3600)  # long all along; only two workers can hold a copy
    assert fleet.desired == 3  # the third was asked for and never placed
    assert [to for _, _, to in fleet.changes] == [2, 3]


def test_an_unplaced_wish_does_not_delay_removing_a_placed_replica():
    fleet = Fleet(workers=2)
    fleet.run(3600)
    assert (fleet.desired, fleet.placed) == (3, 2)
    fleet.run(DOWN_AFTER_SECONDS + 5, queued=0, running=0)
    assert fleet.desired == 1  # 2 placed -> 1: one replica unloaded, in one step
    assert fleet.reasons[-1].endswith("(2 of the 3 wanted were placed)")


def test_a_version_placed_nowhere_changes_nothing():
    decision = decide(ReplicaState(desired=2), Load(queued=100, running=0, replica_slots=()), 1e6)
    assert not decision.changed and decision.state.long_since is None


def test_a_clock_going_backwards_restarts_the_timers():
    state = decide(ReplicaState(), Load(10, 8, (8,)), 1000.0).state
    assert state.long_since == 1000.0
    later = decide(state, Load(10, 8, (8,)), 500.0)
    assert later.state.long_since == 500.0 and not later.changed


@pytest.mark.parametrize(
    "bad",
    [
        lambda: ReplicaState(desired=0),
        lambda: ScalingRules(up_queue_per_slot=0),
        lambda: ScalingRules(down_utilisation=1.5),
        lambda: ScalingRules(cooldown_seconds=-1),
    ],
)
def test_malformed_rules_and_states_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


# --- Properties ---------------------------------------------------------------------------------

observations = st.lists(
    st.tuples(
        st.floats(min_value=0.5, max_value=120),  # seconds since the previous observation
        st.integers(min_value=0, max_value=80),  # queued
        st.integers(min_value=0, max_value=40),  # running
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(observations, st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=6))
def test_changes_are_single_steps_apart_by_the_cooldown_and_never_below_one(steps, start, workers):
    rules = ScalingRules()
    fleet = Fleet(rules, replicas=min(start, workers), workers=workers)
    for gap, queued, running in steps:
        fleet.now += gap
        fleet.observe(queued, running)
        assert fleet.desired >= 1
    for (a, _, _), (b, _, _) in pairwise(fleet.changes):
        assert b - a >= rules.cooldown_seconds
    for _, before, to in fleet.changes:
        # Up by one; down by one replica that is placed (from what was placed, if less was).
        assert to == before + 1 or (to < before and to >= 1)


@settings(max_examples=300, deadline=None)
@given(observations)
def test_no_condition_held_for_its_delay_means_no_change(steps):
    """Hysteresis: a load that never stays long for UP_AFTER_SECONDS, nor idle for
    DOWN_AFTER_SECONDS, never changes the count, however often it crosses them."""
    fleet = Fleet(replicas=2)
    long_for = idle_for = 0.0
    for gap, queued, running in steps:
        slots = SLOTS * fleet.placed
        is_long = queued >= slots
        is_idle = queued == 0 and running <= SLOTS / 2
        long_for = long_for + gap if is_long else 0.0
        idle_for = idle_for + gap if is_idle else 0.0
        if long_for >= UP_AFTER_SECONDS or idle_for >= DOWN_AFTER_SECONDS:
            return  # from here on a change is allowed
        fleet.now += gap
        fleet.observe(queued, running)
        assert fleet.changes == []
