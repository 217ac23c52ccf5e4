"""Where each model version runs: first-fit decreasing bin packing on GPU memory (the
integer program of apps.scheduler.placement_program is the placer's first choice; this is
its fallback and the bar it must clear).

Pure Python, no Django: ``apps.scheduler.placer.apply_placement`` gathers the
items (live model versions and what each needs) and the bins (active managed
workers and the free memory of each of their GPUs), calls ``plan_placement``
and writes the result.

- A CPU item needs no GPU memory and is placed on every worker (as models
  without versions always were): it costs nothing to offer it everywhere.
- A worker's ``hosts``, when set, are the only items it may take.
- A GPU item must fit on one GPU. Items go in decreasing order of memory,
  each onto the first GPU (workers in the given order, GPUs by index) with
  room left. An item that is already placed keeps its GPU when it still has
  room (so a loaded model is not moved for nothing; when its primary's GPU
  is gone or full, a GPU holding one of its replicas is tried next, and that
  replica becomes the primary); if that "sticky" pass
  leaves anything out, a from-scratch FFD is tried as well and the plan that
  places more items wins, so stickiness never places fewer than plain FFD.
- Then, with what memory is left, each placed GPU item gets replicas on
  other workers, up to ``desired[item]`` copies in all, the primary included
  (default 1: the primary alone). How many are wanted is the replica scaler's
  call (apps.scheduler.autoscale: by queue length, with hysteresis), not the
  room left: a copy costs a model load and GPU memory, and is worth it only
  when the queue needs it. Replicas the current plan has are kept first, in
  the order they were added, for every item before any new replica is
  added, so loaded copies are not moved or crowded out; lowering ``desired``
  drops the most recently added replicas, never the primary. New replicas go,
  largest items first, onto the first other worker with room. Replicas come
  after every primary, so they never take the room an item needs to be
  placed at all. A wish the fleet has no room for is reported in
  ``Plan.short`` ("wanted 3, room for 2").

Guarantees of the primary pass (it is plain FFD when nothing is placed yet):
- For a fixed set of m GPUs of equal free memory C: if FFD leaves an item out,
  the items cannot all be placed even with ~15% less demand: whenever they
  fit on m GPUs of capacity 11/13·C, FFD places them all on m GPUs of
  capacity C (the MULTIFIT bound: Coffman, Garey & Johnson 1978; Yue 1990).
- Counted in GPUs of equal size, FFD never uses more than 11/9·OPT + 6/9 of
  them (Dósa 2007): the capacity it needs is within ~22% of the optimum.
- On GPUs of different sizes there is no constant-factor guarantee, but every
  item left out comes with a certificate: at that point no GPU had its size
  free (the reason says how much the best one had).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

CPU = "cpu"
GPU = "gpu"
GIB = 1024**3
NO_HOST = "no active worker may host it"


@dataclass(frozen=True)
class Item:
    """Something to place: a model version and what it needs."""

    key: str  # e.g. "tiny@v2"
    device: str  # "cpu" or "gpu"
    gpu_memory_bytes: int = 0
    # Tasks waiting for it or running on it: what its copies could serve
    # (apps.scheduler.placement_program maximises the demand served; FFD ignores it).
    demand: int = 0

    def __post_init__(self) -> None:
        if self.device not in (CPU, GPU):
            raise ValueError(f"{self.key}: device must be 'cpu' or 'gpu', not {self.device!r}")
        if self.gpu_memory_bytes < 0:
            raise ValueError(f"{self.key}: gpu_memory_bytes must be >= 0")
        if self.demand < 0:
            raise ValueError(f"{self.key}: demand must be >= 0")


@dataclass(frozen=True)
class Gpu:
    index: int
    free_bytes: int


@dataclass(frozen=True)
class Bin:
    """A worker: its GPUs and how much memory each has free for placed models."""

    key: str
    gpus: tuple[Gpu, ...] = ()
    # Tasks it runs at once (None: no limit), shared by every model on it.
    slots: int | None = None
    # The item keys it may host (None: any).
    hosts: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.slots is not None and self.slots < 0:
            raise ValueError(f"{self.key}: slots must be >= 0")

    def may_host(self, key: str) -> bool:
        return self.hosts is None or key in self.hosts


@dataclass(frozen=True)
class Slot:
    """Where an item runs: a worker, and the GPU index on it (None: on its CPU)."""

    bin: str
    gpu: int | None = None


@dataclass(frozen=True)
class Unplaced:
    item: str
    reason: str


@dataclass(frozen=True)
class Short:
    """A placed GPU item that got fewer copies than wanted: no other worker had room."""

    item: str
    wanted: int
    placed: int

    def __str__(self) -> str:
        return f"wanted {self.wanted} replicas, room for {self.placed}"


@dataclass(frozen=True)
class Plan:
    # Item key -> where it runs; for a GPU item the first slot is its primary,
    # then its replicas, oldest first.
    slots: Mapping[str, tuple[Slot, ...]] = field(default_factory=dict)
    unplaced: tuple[Unplaced, ...] = ()
    short: tuple[Short, ...] = ()
    # How it was made: FFD, or apps.scheduler.placement_program's solver (and why not, when it fell back).
    method: str = "first-fit decreasing"


def plan_placement(
    items: Sequence[Item],
    bins: Sequence[Bin],
    current: Mapping[str, Sequence[Slot]] | None = None,
    *,
    desired: Mapping[str, int] | None = None,
) -> Plan:
    """Assign ``items`` to ``bins``.

    ``current`` is the previous plan, each item's slots primary first and
    replicas oldest first (kept where they still fit); ``desired`` the number
    of copies wanted per GPU item, the primary included (missing: 1).
    """
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        raise ValueError("item keys must be unique")
    desired = desired or {}
    if any(count < 1 for count in desired.values()):
        raise ValueError("desired replica counts must be >= 1: the primary is always wanted")
    current = current or {}
    slots: dict[str, tuple[Slot, ...]] = {}
    unplaced: list[Unplaced] = []

    for item in items:
        if item.device == CPU:
            hosts = tuple(Slot(b.key) for b in bins if b.may_host(item.key))
            if hosts:
                slots[item.key] = hosts
            else:
                unplaced.append(Unplaced(item.key, NO_HOST if bins else "no active worker"))

    gpu_items = sorted((i for i in items if i.device == GPU), key=lambda i: (-i.gpu_memory_bytes, i.key))
    capacity = {(b.key, g.index): g.free_bytes for b in bins for g in b.gpus}
    if not gpu_items:
        return Plan(slots=slots, unplaced=tuple(unplaced))
    if not capacity:
        reason = "needs a GPU but no active worker has one" if bins else "no active worker"
        unplaced.extend(Unplaced(i.key, reason) for i in gpu_items)
        return Plan(slots=slots, unplaced=tuple(unplaced))

    # Where each item is now, primary first: if its primary's GPU is gone or full,
    # a surviving replica becomes the primary rather than a fresh load elsewhere.
    primary_current = {
        key: tuple(slot for slot in map(_gpu_slot_key, found) if slot is not None) for key, found in current.items()
    }
    allowed = _allowed(bins)
    primaries, left = _first_fit_decreasing(gpu_items, capacity, primary_current, allowed)
    if left:
        fresh, fresh_left = _first_fit_decreasing(gpu_items, capacity, {}, allowed)
        if len(fresh_left) < len(left):
            primaries, left = fresh, fresh_left

    need = {item.key: item.gpu_memory_bytes for item in gpu_items}
    remaining = dict(capacity)
    for key, slot in primaries.items():
        remaining[slot] -= need[key]
    placed_on: dict[str, list[tuple[str, int]]] = {key: [slot] for key, slot in primaries.items()}
    _add_replicas(gpu_items, bins, remaining, placed_on, current, desired, allowed)

    short = []
    for item in gpu_items:
        if item.key in placed_on:
            slots[item.key] = tuple(Slot(b, g) for b, g in placed_on[item.key])
            if len(placed_on[item.key]) < desired.get(item.key, 1):
                short.append(Short(item.key, desired[item.key], len(placed_on[item.key])))
    for item in gpu_items:
        if item.key in left:
            hosting = [free for (b, _), free in capacity.items() if allowed(item.key, b)]
            reason = unplaced_reason(item, max(hosting), left[item.key]) if hosting else NO_HOST
            unplaced.append(Unplaced(item.key, reason))
    return Plan(slots=slots, unplaced=tuple(unplaced), short=tuple(short))


def _allowed(bins: Sequence[Bin]) -> Callable[[str, str], bool]:
    """(item key, bin key) -> whether that worker may host that item."""
    by_key = {b.key: b for b in bins}
    return lambda item, bin_key: bin_key in by_key and by_key[bin_key].may_host(item)


def _gpu_slot_key(slot: Slot) -> tuple[str, int] | None:
    return (slot.bin, slot.gpu) if slot.gpu is not None else None


def _first_fit_decreasing(
    items: Sequence[Item],
    capacity: Mapping[tuple[str, int], int],
    preferred: Mapping[str, Sequence[tuple[str, int]]],
    allowed: Callable[[str, str], bool],
) -> tuple[dict[str, tuple[str, int]], dict[str, int]]:
    """(item -> GPU, item left out -> the most any GPU it may use had left when it was tried).

    ``items`` are already in decreasing order; ``capacity`` iterates in the
    bins' order, so "first" is well defined. An item goes to the first of its
    preferred GPUs that still has room, else to the first fit.
    """
    remaining = dict(capacity)
    placed: dict[str, tuple[str, int]] = {}
    left: dict[str, int] = {}
    for item in items:
        need = item.gpu_memory_bytes
        slot = next(
            (s for s in preferred.get(item.key, ()) if remaining.get(s, -1) >= need and allowed(item.key, s[0])), None
        )
        if slot is None:
            slot = next((s for s, free in remaining.items() if free >= need and allowed(item.key, s[0])), None)
        if slot is None:
            left[item.key] = max((free for s, free in remaining.items() if allowed(item.key, s[0])), default=0)
            continue
        remaining[slot] -= need
        placed[item.key] = slot
    return placed, left


def _add_replicas(
    items: Sequence[Item],
    bins: Sequence[Bin],
    remaining: dict[tuple[str, int], int],
    placed_on: dict[str, list[tuple[str, int]]],
    current: Mapping[str, Sequence[Slot]],
    desired: Mapping[str, int],
    allowed: Callable[[str, str], bool],
) -> None:
    """Copies of each placed item on other workers, up to ``desired`` in all (see the module docstring).

    Two passes over the items, largest first: the first keeps the current
    plan's replicas (oldest first, so lowering ``desired`` drops the newest),
    the second adds new ones on the first other worker with room. Keeping
    every loaded copy before adding any new one means a new replica of one
    item never evicts a loaded replica of another.
    """
    for item in items:
        where = placed_on.get(item.key)
        for slot in map(_gpu_slot_key, current.get(item.key, ())):
            if where is None or len(where) >= desired.get(item.key, 1):
                break
            if slot is not None and allowed(item.key, slot[0]) and _has_room(slot, item, where, remaining):
                remaining[slot] -= item.gpu_memory_bytes
                where.append(slot)
    for item in items:
        where = placed_on.get(item.key)
        for b in bins:
            if where is None or len(where) >= desired.get(item.key, 1):
                break
            if not b.may_host(item.key):
                continue
            slot = next((s for s in ((b.key, g.index) for g in b.gpus) if _has_room(s, item, where, remaining)), None)
            if slot is not None:
                remaining[slot] -= item.gpu_memory_bytes
                where.append(slot)


def _has_room(
    slot: tuple[str, int], item: Item, where: Sequence[tuple[str, int]], remaining: Mapping[tuple[str, int], int]
) -> bool:
    """``slot`` can take a copy of ``item``: it is on a worker without one, and has the memory."""
    return remaining.get(slot, -1) >= item.gpu_memory_bytes and all(slot[0] != bin_key for bin_key, _ in where)


def unplaced_reason(item: Item, largest_gpu: int, most_left: int) -> str:
    need = format_bytes(item.gpu_memory_bytes)
    if item.gpu_memory_bytes > largest_gpu:
        return f"needs {need} of GPU memory; the largest free GPU has {format_bytes(largest_gpu)}"
    return (
        f"needs {need} of GPU memory; after placing the larger models the most left on any GPU "
        f"is {format_bytes(most_left)}"
    )


def format_bytes(count: int) -> str:
    return f"{count / GIB:.1f} GiB ({count} bytes)"
