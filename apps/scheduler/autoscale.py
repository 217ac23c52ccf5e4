"""How many replicas a GPU model version wants: driven by its queue, with hysteresis.

Pure Python, no Django, no clock of its own: ``decide`` takes the version's
load at ``now`` and the state of the previous decision, and returns the new
state. ``apps.scheduler.placer.apply_placement`` keeps the state in the
database (``ReplicaTarget``), runs this for every placed GPU version, and
hands the desired counts to the placement (``apps.scheduler.placement``),
which puts at most that many copies of the version on workers with room.

Workers pull from the queues of the versions placed on them, so pulling is
the load balancer; what this module decides is only how many workers hold a
copy. The rule (defaults in ``ScalingRules``):

- **Up by one** when the queue has been *long* — ``queued ≥ up_queue_per_slot ×
  serving slots`` (default 1: a full second round of tasks waits behind the
  one running) — continuously for ``up_after_seconds`` (30 s). The serving
  slots are the task slots of the workers holding a replica now; a replica
  still loading counts already, which damps scaling up: each new replica
  raises the bar the queue must clear.
- **Down by one** (never below 1, the primary) when the version has been
  *idle* — nothing queued, and the tasks running would fill at most
  ``down_utilisation`` (50 %) of the slots left without the newest replica —
  continuously for ``down_after_seconds`` (300 s).
- After any change, nothing changes for ``cooldown_seconds`` (60 s), and the
  timer of the condition that fired restarts: each further step needs its
  own full period, so a sustained queue adds one replica per period, never
  several at once.
- A timer restarts whenever its condition breaks, and scaling up waits until
  the previous step has been placed (a wish the fleet has no room for is not
  stacked higher; the placement reports the shortfall).

Why the gap between the two conditions and the long delays: loading a model
takes seconds to minutes, and a replica that is added and removed again with
the load's every swing costs that load each time while serving little. Up
needs twice the fleet's capacity in demand for half a minute; down needs an
empty queue and a half-idle fleet for five minutes; a load between the two,
or one that crosses a threshold only briefly, changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

# Defaults of ScalingRules, named so that docs and tests can refer to them.
UP_QUEUE_PER_SLOT = 1.0  # queued tasks per serving slot that make a queue "long"
UP_AFTER_SECONDS = 30.0  # how long it must stay long before a replica is added
DOWN_UTILISATION = 0.5  # the most of the remaining slots the running tasks may fill to remove one
DOWN_AFTER_SECONDS = 300.0  # how long the version must stay idle before a replica is removed
COOLDOWN_SECONDS = 60.0  # after a change, no other change (about one model load)


@dataclass(frozen=True)
class ScalingRules:
    """The thresholds of the rule in the module docstring."""

    up_queue_per_slot: float = UP_QUEUE_PER_SLOT
    up_after_seconds: float = UP_AFTER_SECONDS
    down_utilisation: float = DOWN_UTILISATION
    down_after_seconds: float = DOWN_AFTER_SECONDS
    cooldown_seconds: float = COOLDOWN_SECONDS

    def __post_init__(self) -> None:
        if self.up_queue_per_slot <= 0:
            raise ValueError("up_queue_per_slot must be > 0 (0 would call an empty queue long)")
        if not 0 <= self.down_utilisation <= 1:
            raise ValueError("down_utilisation must be between 0 and 1")
        for name in ("up_after_seconds", "down_after_seconds", "cooldown_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


@dataclass(frozen=True)
class Load:
    """A version's load at one moment."""

    queued: int  # tasks waiting to run (state queued, handed to a worker's queue or not)
    running: int
    # Task slots of the worker of each replica placed now, primary first, newest last.
    replica_slots: Sequence[int] = ()

    @property
    def replicas(self) -> int:
        return len(self.replica_slots)

    @property
    def slots(self) -> int:
        return sum(self.replica_slots)


@dataclass(frozen=True)
class ReplicaState:
    """What a decision leaves for the next one. Times are seconds on the caller's clock."""

    desired: int = 1  # replicas wanted, the primary included
    long_since: float | None = None  # since when the queue has been long (None: it is not)
    idle_since: float | None = None  # since when the version has been idle (None: it is not)
    changed_at: float | None = None  # when ``desired`` last changed

    def __post_init__(self) -> None:
        if self.desired < 1:
            raise ValueError("desired must be >= 1: the primary always stays")


@dataclass(frozen=True)
class Decision:
    state: ReplicaState
    previous: int  # ``desired`` before this decision
    reason: str = ""  # why it changed ("" when it did not)

    @property
    def changed(self) -> bool:
        return self.state.desired != self.previous


def decide(state: ReplicaState, load: Load, now: float, rules: ScalingRules = ScalingRules()) -> Decision:
    """The replicas wanted after observing ``load`` at ``now`` (see the module docstring).

    Deterministic: the same state, load and time give the same decision, so two
    processes that decide from the same stored state write the same result.
    """
    # What is actually serving: a wish beyond what is placed counts for nothing.
    serving = min(state.desired, load.replicas)
    long = (
        load.slots > 0
        and load.replicas >= state.desired  # the last step up has been placed
        and load.queued > 0
        and load.queued >= rules.up_queue_per_slot * load.slots
    )
    left_without_newest = sum(load.replica_slots[: serving - 1]) if serving >= 2 else 0
    idle = serving >= 2 and load.queued == 0 and load.running <= rules.down_utilisation * left_without_newest

    long_since = _since(state.long_since, now) if long else None
    idle_since = _since(state.idle_since, now) if idle else None
    cooled = state.changed_at is None or now - state.changed_at >= rules.cooldown_seconds
    kept = replace(state, long_since=long_since, idle_since=idle_since)

    # (``long_since`` is set exactly when ``long`` holds, ``idle_since`` when ``idle`` does.)
    if long_since is not None and cooled and now - long_since >= rules.up_after_seconds:
        reason = f"{load.queued} queued for {load.slots} slots for {now - long_since:.0f} s"
        # The timer restarts: the next step needs a full period measured with this replica's slots.
        return Decision(ReplicaState(state.desired + 1, now, None, now), state.desired, reason)
    if idle_since is not None and cooled and now - idle_since >= rules.down_after_seconds:
        reason = (
            f"nothing queued and {load.running} running, at most {rules.down_utilisation:.0%} "
            f"of the {left_without_newest} slots left without the newest replica, for {now - idle_since:.0f} s"
        )
        if serving < state.desired:
            reason += f" ({serving} of the {state.desired} wanted were placed)"
        return Decision(ReplicaState(serving - 1, None, now, now), state.desired, reason)
    return Decision(kept, state.desired)


def _since(started: float | None, now: float) -> float:
    # A clock that went backwards restarts the timer rather than extending it.
    return started if started is not None and started <= now else now
