"""Where each model version runs: first-fit decreasing bin packing on GPU memory.

Pure Python, no Django: ``apps.workers.services.apply_placement`` gathers the
items (live model versions and what each needs) and the bins (active managed
workers and the free memory of each of their GPUs), calls ``plan_placement``
and writes the result.

- A CPU item needs no GPU memory and is placed on every worker (as models
  without versions always were): it costs nothing to offer it everywhere.
- A GPU item must fit on one GPU. Items go in decreasing order of memory,
  each onto the first GPU (workers in the given order, GPUs by index) with
  room left. An item that is already placed keeps its GPU when it still has
  room (so a loaded model is not moved for nothing); if that "sticky" pass
  leaves anything out, a from-scratch FFD is tried as well and the plan that
  places more items wins, so stickiness never places fewer than plain FFD.
- Then, with what memory is left, each placed GPU item gets a replica on
  every other worker that still has room for it (largest items first): more
  workers consume its queue. Replicas come after every primary, so they never
  take the room an item needs to be placed at all.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CPU = "cpu"
GPU = "gpu"
GIB = 1024**3


@dataclass(frozen=True)
class Item:
    """Something to place: a model version and what it needs."""

    key: str  # e.g. "tiny@v2"
    device: str  # "cpu" or "gpu"
    gpu_memory_bytes: int = 0

    def __post_init__(self) -> None:
        if self.device not in (CPU, GPU):
            raise ValueError(f"{self.key}: device must be 'cpu' or 'gpu', not {self.device!r}")
        if self.gpu_memory_bytes < 0:
            raise ValueError(f"{self.key}: gpu_memory_bytes must be >= 0")


@dataclass(frozen=True)
class Gpu:
    index: int
    free_bytes: int


@dataclass(frozen=True)
class Bin:
    """A worker: its GPUs and how much memory each has free for placed models."""

    key: str
    gpus: tuple[Gpu, ...] = ()


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
class Plan:
    # Item key -> where it runs; for a GPU item the first slot is its primary.
    slots: Mapping[str, tuple[Slot, ...]] = field(default_factory=dict)
    unplaced: tuple[Unplaced, ...] = ()


def plan_placement(
    items: Sequence[Item],
    bins: Sequence[Bin],
    current: Mapping[str, Sequence[Slot]] | None = None,
    *,
    replicas: bool = True,
) -> Plan:
    """Assign ``items`` to ``bins``; ``current`` is the previous plan (kept where it still fits)."""
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        raise ValueError("item keys must be unique")
    current = current or {}
    slots: dict[str, tuple[Slot, ...]] = {}
    unplaced: list[Unplaced] = []

    for item in items:
        if item.device == CPU:
            if bins:
                slots[item.key] = tuple(Slot(b.key) for b in bins)
            else:
                unplaced.append(Unplaced(item.key, "no active worker"))

    gpu_items = sorted((i for i in items if i.device == GPU), key=lambda i: (-i.gpu_memory_bytes, i.key))
    capacity = {(b.key, g.index): g.free_bytes for b in bins for g in b.gpus}
    if not gpu_items:
        return Plan(slots=slots, unplaced=tuple(unplaced))
    if not capacity:
        reason = "needs a GPU but no active worker has one" if bins else "no active worker"
        unplaced.extend(Unplaced(i.key, reason) for i in gpu_items)
        return Plan(slots=slots, unplaced=tuple(unplaced))

    primary_current = {key: _gpu_slot_key(found[0]) for key, found in current.items() if found}
    primaries, left = _first_fit_decreasing(gpu_items, capacity, primary_current)
    if left:
        fresh, fresh_left = _first_fit_decreasing(gpu_items, capacity, {})
        if len(fresh_left) < len(left):
            primaries, left = fresh, fresh_left

    need = {item.key: item.gpu_memory_bytes for item in gpu_items}
    remaining = dict(capacity)
    for key, slot in primaries.items():
        remaining[slot] -= need[key]
    placed_on: dict[str, list[tuple[str, int]]] = {key: [slot] for key, slot in primaries.items()}
    if replicas:
        _add_replicas(gpu_items, bins, remaining, placed_on, current)

    for item in gpu_items:
        if item.key in placed_on:
            slots[item.key] = tuple(Slot(b, g) for b, g in placed_on[item.key])
    largest = max(capacity.values())
    for item in gpu_items:
        if item.key in left:
            unplaced.append(Unplaced(item.key, _reason(item, largest, left[item.key])))
    return Plan(slots=slots, unplaced=tuple(unplaced))


def _gpu_slot_key(slot: Slot) -> tuple[str, int] | None:
    return (slot.bin, slot.gpu) if slot.gpu is not None else None


def _first_fit_decreasing(
    items: Sequence[Item],
    capacity: Mapping[tuple[str, int], int],
    preferred: Mapping[str, tuple[str, int] | None],
) -> tuple[dict[str, tuple[str, int]], dict[str, int]]:
    """(item -> GPU, item left out -> the most any GPU had left when it was tried).

    ``items`` are already in decreasing order; ``capacity`` iterates in the
    bins' order, so "first" is well defined. An item with a preferred GPU
    that still has room goes there instead of the first fit.
    """
    remaining = dict(capacity)
    placed: dict[str, tuple[str, int]] = {}
    left: dict[str, int] = {}
    for item in items:
        need = item.gpu_memory_bytes
        slot = preferred.get(item.key)
        if slot is None or remaining.get(slot, -1) < need:
            slot = next((s for s, free in remaining.items() if free >= need), None)
        if slot is None:
            left[item.key] = max(remaining.values())
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
) -> None:
    """One more copy of each placed item on every other worker with room for it, largest first."""
    for item in items:
        where = placed_on.get(item.key)
        if where is None:
            continue
        previous = {s.bin: (s.bin, s.gpu) for s in current.get(item.key, ()) if s.gpu is not None}
        for b in bins:
            if any(bin_key == b.key for bin_key, _ in where):
                continue
            candidates = [(b.key, g.index) for g in b.gpus]
            if b.key in previous and previous[b.key] in remaining:
                candidates.insert(0, previous[b.key])  # keep a loaded replica where it is
            slot = next((s for s in candidates if remaining[s] >= item.gpu_memory_bytes), None)
            if slot is not None:
                remaining[slot] -= item.gpu_memory_bytes
                where.append(slot)


def _reason(item: Item, largest_gpu: int, most_left: int) -> str:
    need = format_bytes(item.gpu_memory_bytes)
    if item.gpu_memory_bytes > largest_gpu:
        return f"needs {need} of GPU memory; the largest free GPU has {format_bytes(largest_gpu)}"
    return (
        f"needs {need} of GPU memory; after placing the larger models the most left on any GPU "
        f"is {format_bytes(most_left)}"
    )


def format_bytes(count: int) -> str:
    return f"{count / GIB:.1f} GiB ({count} bytes)"
